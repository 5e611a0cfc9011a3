"""Batch clusters end to end on a FAKE batch system: submit, scale, compute, cancel.

There is no SLURM or PBS here.  ``tests/fake_batch.py`` puts ``sbatch``/``squeue``/
``scancel`` (or ``qsub``/``qstat``/``qdel``) shims first on PATH; the submit shim
runs the job script dask-jobqueue generated, unchanged, as a background process
group on this machine, so the real ``dask worker`` command of the real job script
starts and joins the scheduler vidsvd started; the cancel shim kills that process
group.  What this proves: the options become a job script that starts workers,
the scheduler is reachable on the interface (``lo`` here), computations run on
those workers, and every job is cancelled when vidsvd is done, on success, on
Ctrl-C, on a refused submission and when no worker comes.  What it cannot prove:
that a real queue accepts the directives (see the job-script tests for those).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dask.array as da
import dask.config
import numpy as np
import pytest

from cluster.batch_options import SYSTEMS, BatchOptions
from cluster.client import connect, describe
from cluster.errors import BatchSubmitError, NoWorkersError
from cluster.jobqueue import load_jobqueue
from cluster.options import ClusterOptions
from pipelines.cli import main
from storage.factor_lookup import list_factors
from storage.factors import open_factors
from storage.video_encoder import write_video
from tests.cli_process import CliProcess, message_lines
from tests.fake_batch import FakeBatch, install
from tests.helpers import assert_one_line_error, run_cli

pytestmark = pytest.mark.timeout(300)

WORKER_START_S = 120.0


def _fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, system: str) -> Iterator[FakeBatch]:
    load_jobqueue()  # its defaults, in dask's configuration

    fake = install(tmp_path / "fake-batch", system)
    for name, value in fake.environment().items():
        monkeypatch.setenv(name, value)
    # only dask-jobqueue's defaults, whatever this machine's own configuration says
    defaults = {**dask.config.get(f"jobqueue.{system}"), "cores": None, "memory": None, "interface": None}
    try:
        with dask.config.set({f"jobqueue.{system}": defaults}):
            yield fake
    finally:
        fake.kill_all()


@pytest.fixture(params=sorted(SYSTEMS))
def system(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fake_batch(system: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBatch]:
    yield from _fake(tmp_path, monkeypatch, system)


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBatch]:
    yield from _fake(tmp_path, monkeypatch, "slurm")


def _small_jobs(system: str, **changes: object) -> BatchOptions:
    values: dict[str, object] = {
        "system": system,
        "jobs": 2,
        "job_cores": 1,
        "job_memory": "1GiB",
        "walltime": "00:10:00",
        "interface": "lo",
        "start_timeout_s": WORKER_START_S,
    }
    values.update(changes)
    return BatchOptions(**values)  # type: ignore[arg-type]


def _assert_released(fake: FakeBatch, n_jobs: int) -> None:
    jobs = fake.jobs()
    assert len(jobs) == n_jobs
    deadline = time.monotonic() + 15
    while any(job.alive() for job in jobs) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [job.id for job in jobs if job.alive()] == [], "a job's processes outlived vidsvd"
    assert all(job.cancelled for job in jobs), "every job is cancelled, not left to its walltime"


@pytest.mark.slow
def test_jobs_start_workers_compute_and_are_cancelled_on_ctrl_c(
    system: str, fake_batch: FakeBatch, tmp_path: Path
) -> None:
    logs = tmp_path / "job-logs"
    options = ClusterOptions(batch=_small_jobs(system, job_directory=str(logs)))
    with pytest.raises(KeyboardInterrupt), connect(options) as client:
        assert client.scheduler is not None
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")  # the address of --interface lo
        client.wait_for_workers(2, timeout=WORKER_START_S)
        assert "2 workers, 2 threads, 2.00 GiB memory" in describe(client)
        assert int(da.arange(1_000_000, chunks=100_000).sum().compute()) == 499_999_500_000
        assert all(job.alive() for job in fake_batch.jobs())
        raise KeyboardInterrupt  # Ctrl-C in the middle of a command
    _assert_released(fake_batch, 2)
    script = fake_batch.jobs()[0].script
    directive = "#SBATCH" if system == "slurm" else "#PBS"
    assert f"{directive} " in script and "-m distributed.cli.dask_worker tcp://127.0.0.1:" in script
    assert any(logs.iterdir()), "the jobs wrote their logs into --job-directory"


@pytest.fixture
def clip_in_cwd(
    make_video,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """``clip.zarr``, 24 frames ingested, in ``tmp_path``, now the working directory.

    The jobs start in their own folders; their script comes back here.
    """
    video, _ = make_video(n_frames=24)
    monkeypatch.chdir(tmp_path)
    status, _, err = run_cli(capsys, "ingest", str(video), "--store", "clip.zarr", "--quiet")
    assert status == 0, err
    return tmp_path / "clip.zarr"


@pytest.mark.slow
def test_cli_decompose_runs_on_slurm_jobs_and_releases_them(
    fake_slurm: FakeBatch, clip_in_cwd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_cli(
        capsys,
        "decompose", "--store", "clip.zarr", "--rank", "3",
        "--cluster", "slurm", "--jobs", "2", "--job-cores", "1", "--job-memory", "1GiB",
        "--walltime", "00:10:00", "--interface", "lo", "--job-directory", "logs",
        "--job-extra=--comment=vidsvd-test", "--job-start-timeout", str(WORKER_START_S),
    )  # fmt: skip
    assert status == 0, err
    assert "computing on dask scheduler tcp://127.0.0.1:" in err
    factors = open_factors(str(tmp_path / "clip.zarr"), "exact-k3")
    assert factors.rank == 3
    _assert_released(fake_slurm, 2)
    for job in fake_slurm.jobs():
        assert "#SBATCH --comment=vidsvd-test" in job.script
        assert "#SBATCH --cpus-per-task=1" in job.script and "#SBATCH --mem=1G" in job.script
        assert "#SBATCH -t 00:10:00" in job.script
        assert f"cd {tmp_path}" in job.script
    assert sorted(p.suffix for p in (tmp_path / "logs").iterdir()) == [".err", ".err", ".out", ".out"]
    squeue = fake_slurm.bin / "squeue"
    assert subprocess.run([str(squeue)], capture_output=True, text=True, check=True).stdout == ""


@pytest.mark.slow
def test_jobs_whose_python_lacks_vidsvd_are_one_line_not_a_hang(
    fake_slurm: FakeBatch,
    clip_in_cwd: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The jobs' Python finds another vidsvd first, whose storage cannot be imported.  A
    # task a worker cannot unpickle stops it, which left decompose waiting forever.
    older = tmp_path / "older-vidsvd"
    (older / "storage").mkdir(parents=True)
    (older / "storage" / "__init__.py").write_text(
        "raise ImportError('an older vidsvd, without storage.integrity')"
    )
    monkeypatch.setenv("PYTHONPATH", str(older))
    started = time.monotonic()
    status, out, err = run_cli(
        capsys,
        "decompose", "--store", "clip.zarr", "--rank", "3",
        "--cluster", "slurm", "--jobs", "1", "--job-cores", "1", "--job-memory", "1GiB",
        "--interface", "lo", "--job-start-timeout", str(WORKER_START_S), "--quiet",
    )  # fmt: skip
    assert status == 1 and out == ""
    assert_one_line_error(
        err,
        "1 of 1 dask workers (tcp://127.0.0.1:",
        "cannot run vidsvd's tasks as this machine would (storage.integrity: ImportError: an older vidsvd",
        "install the same vidsvd and libraries on every worker",
    )
    assert time.monotonic() - started < WORKER_START_S
    assert list_factors(clip_in_cwd) == []
    _assert_released(fake_slurm, 1)


def test_a_refused_submission_is_one_line_and_leaves_no_job(
    fake_slurm: FakeBatch,
    make_video,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    video, _ = make_video(n_frames=8)
    store = str(tmp_path / "clip.zarr")
    assert run_cli(capsys, "ingest", str(video), "--store", store, "--quiet")[0] == 0
    monkeypatch.setenv("FAKE_BATCH_REFUSE", "sbatch: error: invalid partition specified: nope")
    with (
        pytest.raises(BatchSubmitError) as info,
        connect(ClusterOptions(batch=_small_jobs("slurm", queue="nope"))),
    ):
        pytest.fail("connect must not yield without jobs")
    assert str(info.value).startswith(
        "sbatch refused the worker job: sbatch: error: invalid partition specified: nope; check --queue"
    )
    assert fake_slurm.jobs() == []
    status, _, err = run_cli(
        capsys,
        "decompose", "--store", store, "--rank", "2",
        "--cluster", "slurm", "--job-cores", "1", "--job-memory", "1GiB", "--interface", "lo",
    )  # fmt: skip
    assert status == 1
    assert_one_line_error(err, "sbatch refused the worker job: sbatch: error: invalid partition specified")
    assert fake_slurm.jobs() == []


def test_ctrl_c_while_the_jobs_are_awaited_is_raised_between_waits_and_cancels_them(
    fake_slurm: FakeBatch, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("FAKE_BATCH_HOLD", "1")
    options = ClusterOptions(batch=_small_jobs("slurm", start_timeout_s=120.0))

    def press_ctrl_c_once_submitted() -> None:
        deadline = time.monotonic() + 60
        while len(fake_slurm.jobs()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        if len(fake_slurm.jobs()) == 2:  # else connect failed early: no press to abort pytest with
            os.kill(os.getpid(), signal.SIGINT)

    handler_before = signal.getsignal(signal.SIGINT)
    presser = threading.Thread(target=press_ctrl_c_once_submitted, daemon=True)
    started = time.monotonic()
    presser.start()
    with caplog.at_level(logging.ERROR), pytest.raises(KeyboardInterrupt), connect(options):
        pytest.fail("connect must not yield without a worker")
    presser.join()
    assert time.monotonic() - started < 60, "the start timeout ran out: Ctrl-C was lost"
    assert signal.getsignal(signal.SIGINT) is handler_before
    jobs = fake_slurm.jobs()
    assert len(jobs) == 2 and all(job.cancelled for job in jobs)
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []


def test_jobs_that_never_start_time_out_and_are_cancelled(
    fake_slurm: FakeBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_BATCH_HOLD", "1")  # the queue accepts the jobs but never runs them
    options = ClusterOptions(batch=_small_jobs("slurm", start_timeout_s=1.5))
    started = time.monotonic()
    with pytest.raises(NoWorkersError) as info, connect(options):
        pytest.fail("connect must not yield without a worker")
    assert time.monotonic() - started < 30
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        "no dask worker of the 2 SLURM jobs joined within 1.5 s, so they were cancelled"
    )
    assert "squeue --me" in message and "--job-start-timeout" in message
    jobs = fake_slurm.jobs()
    assert len(jobs) == 2 and all(job.cancelled for job in jobs)


@pytest.mark.slow
def test_ctrl_c_while_jobs_wait_in_the_queue_cancels_them(
    fake_slurm: FakeBatch,
    make_video,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    video, _ = make_video(n_frames=8)
    monkeypatch.setenv("FAKE_BATCH_HOLD", "1")
    command = [
        sys.executable, "-m", "pipelines.cli", "run", str(video), "--out", str(tmp_path / "out"), "--quiet", "--rank", "2",
        "--cluster", "slurm", "--jobs", "2", "--job-cores", "1", "--job-memory", "1GiB", "--interface", "lo",
    ]  # fmt: skip
    # with the fault handler on, SIGABRT makes a hung command print every thread's stack
    environment = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        deadline = time.monotonic() + 60
        while len(fake_slurm.jobs()) < 2 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert len(fake_slurm.jobs()) == 2, "vidsvd did not submit its jobs"
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            _, err = process.communicate(timeout=30)
            pytest.fail(f"vidsvd still ran 60 s after Ctrl-C; its threads then:\n{err[-8000:]}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()  # no zombie left for later tests
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "vidsvd: interrupted; complete outputs are intact, rerun to finish"
    assert "Traceback" not in err
    assert all(job.cancelled for job in fake_slurm.jobs())


@pytest.mark.slow
def test_a_batch_job_killed_mid_decompose_ends_the_command_in_one_line(
    fake_slurm: FakeBatch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the job's worker is killed while the SVD's passes run: no worker comes back, and
    # after --workerless-timeout the command says so, cancels its job, writes nothing
    frames = np.random.default_rng(5).integers(0, 256, size=(400, 120, 160), dtype=np.uint8)
    write_video(tmp_path / "long.mkv", frames, fps=10.0, codec="ffv1")
    monkeypatch.chdir(tmp_path)
    assert main(["ingest", "long.mkv", "--store", "long.zarr", "--quiet"]) == 0
    argv = [
        "decompose", "--store", str(tmp_path / "long.zarr"), "--rank", "3",
        "--method", "randomized", "--power-iters", "40", "--iteration", "qr",
        "--cluster", "slurm", "--jobs", "1", "--job-cores", "1", "--job-memory", "2GiB",
        "--interface", "lo", "--job-start-timeout", str(WORKER_START_S),
        "--workerless-timeout", "3",
    ]  # fmt: skip
    command = CliProcess(argv)
    try:
        command.wait_until(
            lambda: command.progress("decompose (randomized)") is not None,
            timeout_s=WORKER_START_S,
            what="the SVD's tasks",
        )
        (job,) = fake_slurm.jobs()
        assert job.session is not None
        os.killpg(job.session, signal.SIGKILL)  # the batch system killed the job
        killed = time.monotonic()
        assert command.wait(timeout_s=120) == 1
    finally:
        command.kill()
    assert time.monotonic() - killed < 60
    assert_one_line_error(
        "\n".join(message_lines(command.stderr)[-1:]),
        "every dask worker left the scheduler",
        "none came back within 3 s",
    )
    assert list_factors(tmp_path / "long.zarr") == []
    _assert_released(fake_slurm, 1)
