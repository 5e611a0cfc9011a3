"""Ctrl-C in the middle of every command, then the rerun that finishes the job.

Each command runs as its own process group, as a terminal's foreground job, and gets
SIGINT as Ctrl-C sends it: to every process of the group (embedded dask workers and
ffmpeg included), once it shows real progress.  Then:

- exit status 130 and one line on stderr (besides progress bars and earlier
  ``vidsvd:`` lines), no traceback;
- every process it started has ended (no orphan dask worker or ffmpeg);
- what was complete before is byte for byte intact, and the interrupted output is
  absent or not marked complete;
- rerunning the same command finishes, with the result of an uninterrupted run.

With ``--scheduler`` the cluster is someone else's: the interrupt must cancel the
job's tasks there and leave the scheduler and its workers running.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from cluster.client import connect, scheduler_workers
from cluster.options import ClusterOptions
from pipelines.cli import main
from pipelines.synthetic import SceneSpec, write_scene
from storage.derived import open_derived
from storage.errors import StoreIncompleteError
from storage.factor_lookup import list_factors
from storage.factors import open_factors
from storage.video_array import open_video
from tests.cli_process import CliProcess, message_lines
from tests.external_cluster import ExternalCluster
from tests.helpers import assert_one_line_error, run_cli, tree_digest

pytestmark = pytest.mark.timeout(300)

# 300 frames in chunks of 10: long enough that each command is interrupted well
# before its end (decompose runs ~1400 tasks for about 5 s on one one-thread worker).
SCENE = SceneSpec(width=160, height=120, n_frames=300, n_objects=3, seed=5)
CHUNK_FRAMES = "10"
RANK = "5"
FACTORS = "randomized-k5"
RANDOMIZED = ("--method", "randomized")  # the passes under test (the default takes the Gram here)
CLUSTER = ("--workers", "1", "--threads-per-worker", "1")
INTERRUPTED = "vidsvd: interrupted; complete outputs are intact, rerun to finish"
DASK_WORKER = "multiprocessing.spawn"  # how an embedded dask worker process is started


@dataclass(frozen=True)
class Reference:
    """An uninterrupted job, with the store as each step left it."""

    video: Path
    video_only: Path  # after ingest
    factored: Path  # + factors
    separated: Path  # + foreground and masks
    out: Path  # separate's and report's files
    applied: Path  # apply's files


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    folder = tmp_path_factory.mktemp("reference")
    video = folder / "scene.mp4"
    write_scene(SCENE, video)
    ref = Reference(
        video=video,
        video_only=folder / "video.zarr",
        factored=folder / "factored.zarr",
        separated=folder / "separated.zarr",
        out=folder / "out",
        applied=folder / "applied",
    )
    quiet = "--quiet"
    ingest = ["ingest", str(video), "--store", str(ref.video_only), "--chunk-frames", CHUNK_FRAMES, quiet]
    assert main(ingest) == 0
    shutil.copytree(ref.video_only, ref.factored)
    assert (
        main(["decompose", "--store", str(ref.factored), "--rank", RANK, *RANDOMIZED, quiet, *CLUSTER]) == 0
    )
    shutil.copytree(ref.factored, ref.separated)
    assert main(["separate", "--store", str(ref.separated), "--out", str(ref.out), quiet, *CLUSTER]) == 0
    assert main(["report", "--store", str(ref.separated), "--out", str(ref.out), quiet, *CLUSTER]) == 0
    assert main(["apply", str(video), "--store", str(ref.separated), "--out", str(ref.applied), quiet]) == 0
    return ref


# --------------------------------------------------------------------------- interrupting


@dataclass(frozen=True)
class Interrupted:
    stderr: str
    command_lines: list[str]  # of the processes it had started, just before the interrupt

    def started(self, program: str) -> bool:
        """True when one of the command's processes ran ``program`` (e.g. ffmpeg)."""
        return any(program in command_line for command_line in self.command_lines)


def _interrupt(argv: list[str], *, when: Callable[[CliProcess], bool], what: str) -> Interrupted:
    """Run ``vidsvd ARGV``, press Ctrl-C once ``when`` holds, check how it ended."""
    command = CliProcess(argv)
    try:
        command.wait_until(lambda: when(command), timeout_s=120, what=what)
        children = psutil.Process(command.pid).children(recursive=True)
        command_lines = []
        for child in children:
            with contextlib.suppress(psutil.Error):
                command_lines.append(" ".join(child.cmdline()))
        command.interrupt()
        code = command.wait(timeout_s=60)
    finally:
        command.kill()
    stderr = command.stderr
    assert code == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    lines = message_lines(stderr)
    assert lines, stderr
    assert all(line.startswith("vidsvd: ") for line in lines), stderr[-3000:]
    assert "interrupted" in lines[-1] and not any("interrupted" in line for line in lines[:-1])
    assert children, "the command had started no process: it was not in the middle of its work"
    _assert_ended(children)
    return Interrupted(stderr=stderr, command_lines=command_lines)


def _assert_ended(processes: list[psutil.Process], within_s: float = 15.0) -> None:
    """Every process has ended (a zombie has: only its exit status waits to be read)."""
    deadline = time.monotonic() + within_s
    while True:
        alive = []
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process.pid)
        if not alive:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"processes left running after the interrupt: {alive}")
        time.sleep(0.1)


def _past(command: CliProcess, label: str, share: float) -> bool:
    progress = command.progress(label)
    return progress is not None and progress[0] > share * progress[1]


def _leftovers(folder: Path) -> list[str]:
    """Temporary files of atomic writes (``.NAME.xxxx`` / ``.partial``)."""
    return sorted(p.name for p in folder.rglob(".*") if p.is_file())


# --------------------------------------------------------------------------- comparing


def _factors(store: Path) -> dict[str, np.ndarray]:
    found = open_factors(store, FACTORS)
    return {name: np.asarray(getattr(found, name).compute()) for name in ("U", "s", "Vt")}


def _assert_same_factors(store: Path, reference: Path) -> None:
    got, expected = _factors(store), _factors(reference)
    np.testing.assert_allclose(got["s"], expected["s"], rtol=1e-5)
    for name, axis in (("U", 0), ("Vt", 1)):
        a, b = got[name].astype(np.float64), expected[name].astype(np.float64)
        signs = np.sign(np.sum(a * b, axis=axis, keepdims=True))
        assert np.all(signs != 0)
        np.testing.assert_allclose(a * signs, b, rtol=0, atol=1e-4 * np.max(np.abs(b)))


def _assert_same_separation(store: Path, reference: Path) -> None:
    assert not (store / "foreground").exists()  # stored only on request
    for name in ("masks",):
        got, expected = open_derived(store, name), open_derived(reference, name)
        np.testing.assert_array_equal(got.data.compute(), expected.data.compute())
        assert got.record.threshold == expected.record.threshold


def _assert_same_files(folder: Path, reference: Path, names: tuple[str, ...]) -> None:
    for name in names:
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), name


def _report(folder: Path) -> dict[str, Any]:
    """report.json without what differs between two runs of the same job (times, addresses, paths)."""
    report: dict[str, Any] = json.loads((folder / "report.json").read_text())
    del report["timings"]
    # which arrays, not their bytes: metadata holds times and addresses too
    report["store"] = sorted(row["array"] for row in report["store"]["arrays"])
    for key in ("wall_time_s", "peak_worker_memory", "cluster", "factors_id"):
        del report["factors"][key]
    for model in report.get("background_models", []):
        del model["wall_time_s"], model["factors_id"]
    return report


def _no_complete_factors(store: Path) -> bool:
    return not any(f.complete for f in list_factors(store))


# --------------------------------------------------------------------------- ingest


def test_ctrl_c_during_ingest_then_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = tmp_path / "scene.mp4"
    write_scene(SCENE, video)
    expected, store = tmp_path / "expected.zarr", tmp_path / "store.zarr"
    # one frame per chunk: progress is recorded after every frame, so the ingest is
    # surely interrupted between its first recorded chunk and its end
    ingest = ["ingest", str(video), "--store", str(store), "--chunk-frames", "1"]
    assert main([*ingest[:3], str(expected), *ingest[4:], "--quiet"]) == 0

    def first_chunk_recorded(_command: CliProcess) -> bool:
        try:
            return '"frames_written": 0,' not in (store / "video" / "zarr.json").read_text()
        except OSError:
            return False

    interrupted = _interrupt(ingest, when=first_chunk_recorded, what="a recorded chunk")
    assert interrupted.started("ffmpeg")  # the decoder, ended with the command
    assert message_lines(interrupted.stderr)[-1] == (
        "vidsvd: interrupted; the frames stored so far are kept, rerun with --resume to finish"
    )
    with pytest.raises(StoreIncompleteError):
        open_video(store)
    code, _, stderr = run_cli(capsys, *ingest, "--quiet")
    assert code == 1
    assert_one_line_error(stderr, "--resume")
    code, _, stderr = run_cli(capsys, *ingest, "--resume")
    assert code == 0, stderr
    assert "resuming" in stderr and "frames already stored" in stderr
    resumed, uninterrupted = open_video(store), open_video(expected)
    np.testing.assert_array_equal(resumed.frames.compute(), uninterrupted.frames.compute())
    assert resumed.fingerprint == uninterrupted.fingerprint


# --------------------------------------------------------------------------- decompose


@pytest.mark.slow
def test_ctrl_c_during_decompose(reference: Reference, tmp_path: Path) -> None:
    store = tmp_path / "store.zarr"
    shutil.copytree(reference.video_only, store)
    video_before = tree_digest(store / "video")
    decompose = ["decompose", "--store", str(store), "--rank", RANK, *RANDOMIZED, *CLUSTER]

    interrupted = _interrupt(
        decompose, when=lambda c: _past(c, "decompose (randomized)", 0.1), what="a tenth of the tasks"
    )
    assert message_lines(interrupted.stderr)[-1] == INTERRUPTED
    assert interrupted.started(DASK_WORKER)  # ended with the command: no orphan worker
    assert tree_digest(store / "video") == video_before
    assert _no_complete_factors(store)

    assert main([*decompose, "--quiet"]) == 0
    _assert_same_factors(store, reference.factored)
    assert tree_digest(store / "video") == video_before


@pytest.mark.slow
def test_ctrl_c_during_decompose_on_the_default_cluster(reference: Reference, tmp_path: Path) -> None:
    """Without cluster options the one worker may run in the command's own process."""
    store = tmp_path / "store.zarr"
    shutil.copytree(reference.video_only, store)
    video_before = tree_digest(store / "video")
    decompose = ["decompose", "--store", str(store), "--rank", RANK, *RANDOMIZED]

    interrupted = _interrupt(
        decompose, when=lambda c: _past(c, "decompose (randomized)", 0.1), what="a tenth of the tasks"
    )
    assert message_lines(interrupted.stderr)[-1] == INTERRUPTED
    assert tree_digest(store / "video") == video_before
    assert _no_complete_factors(store)

    assert main([*decompose, "--quiet"]) == 0
    _assert_same_factors(store, reference.factored)
    assert tree_digest(store / "video") == video_before


@pytest.mark.slow
def test_ctrl_c_on_a_shared_cluster_cancels_the_work_and_leaves_the_cluster(
    reference: Reference, tmp_path: Path
) -> None:
    """With ``--scheduler`` the cluster is not ours to close: its tasks must go, its workers stay."""
    store = tmp_path / "store.zarr"
    shutil.copytree(reference.video_only, store)
    (tmp_path / "cluster").mkdir()
    cluster = ExternalCluster(tmp_path / "cluster")
    try:
        cluster.start_scheduler()
        for name in ("worker-a", "worker-b"):
            cluster.start_worker(name, "600MiB")
        with connect(ClusterOptions(scheduler=cluster.address)) as client:
            client.wait_for_workers(2, timeout=60)
            decompose = ["decompose", "--store", str(store), "--rank", RANK, *RANDOMIZED]
            decompose += ["--scheduler", cluster.address]
            command = CliProcess(decompose)
            try:
                command.wait_until(
                    lambda: _past(command, "decompose (randomized)", 0.1), timeout_s=120, what="progress"
                )
                command.interrupt()
                code = command.wait(timeout_s=60)
            finally:
                command.kill()
            assert code == 130, command.stderr[-3000:]
            assert message_lines(command.stderr)[-1] == INTERRUPTED
            deadline = time.monotonic() + 10
            while client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) > 0:
                assert time.monotonic() < deadline, "the interrupted job's tasks stayed on the scheduler"
                time.sleep(0.1)
            assert len(scheduler_workers(client)) == 2
            assert all(process.poll() is None for process in cluster.processes)
            assert _no_complete_factors(store)
            assert main([*decompose, "--quiet"]) == 0
            # the reference: an undisturbed run on this cluster, whose two one-thread
            # workers get M in other chunks than the module's embedded reference (the
            # trailing components of this small scene rotate with the rounding)
            undisturbed = tmp_path / "undisturbed.zarr"
            shutil.copytree(reference.video_only, undisturbed)
            assert main([*decompose[:2], str(undisturbed), *decompose[3:], "--quiet"]) == 0
        _assert_same_factors(store, undisturbed)
    finally:
        cluster.stop()


# --------------------------------------------------------------------------- separate


def _chunk_stored(store: Path) -> Callable[[CliProcess], bool]:
    return lambda _command: any((store / name / "c").exists() for name in ("foreground", "masks"))


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["store", "encode"])
def test_ctrl_c_during_separate(reference: Reference, tmp_path: Path, phase: str) -> None:
    store, out = tmp_path / "store.zarr", tmp_path / "out"
    shutil.copytree(reference.factored, store)
    # the video and the SVD; the robust background separate fits beside them is its own output
    before = {name: tree_digest(store / name) for name in ("video", f"factors/randomized-k{RANK}")}
    separate = ["separate", "--store", str(store), "--out", str(out), *CLUSTER]

    if phase == "store":  # chunks of foreground and masks being written
        interrupted = _interrupt(separate, when=_chunk_stored(store), what="a stored chunk")
    else:  # masks complete, the videos being encoded
        interrupted = _interrupt(separate, when=lambda c: _past(c, "encode", 0), what="an encoded chunk")
    assert message_lines(interrupted.stderr)[-1] == INTERRUPTED
    # storing runs on the cluster, encoding after it closed (ffmpeg)
    assert interrupted.started(DASK_WORKER if phase == "store" else "ffmpeg")
    assert {name: tree_digest(store / name) for name in before} == before
    if phase == "store":
        for name in ("masks",):
            with pytest.raises(StoreIncompleteError):
                open_derived(store, name)
    else:
        _assert_same_separation(store, reference.separated)
    assert not (out / "foreground.mp4").exists() and not (out / "compare.mp4").exists()
    assert not out.exists() or _leftovers(out) == []

    assert main([*separate, "--quiet"]) == 0
    _assert_same_separation(store, reference.separated)
    _assert_same_files(out, reference.out, ("background.png", "foreground.mp4", "compare.mp4"))
    assert {name: tree_digest(store / name) for name in before} == before


# --------------------------------------------------------------------------- report


@pytest.mark.slow
def test_ctrl_c_during_report(reference: Reference, tmp_path: Path) -> None:
    store, out = tmp_path / "store.zarr", tmp_path / "out"
    shutil.copytree(reference.separated, store)
    before = tree_digest(store)
    report = ["report", "--store", str(store), "--out", str(out), *CLUSTER]

    interrupted = _interrupt(report, when=lambda c: _past(c, "report", 0), what="report progress")
    assert message_lines(interrupted.stderr)[-1] == INTERRUPTED
    assert interrupted.started(DASK_WORKER)
    assert tree_digest(store) == before
    assert not (out / "report.json").exists() and not (out / "report.html").exists()
    assert not out.exists() or _leftovers(out) == []

    assert main([*report, "--quiet"]) == 0
    assert _report(out) == _report(reference.out)
    assert tree_digest(store) == before


# --------------------------------------------------------------------------- apply


@pytest.mark.slow
def test_ctrl_c_during_apply(reference: Reference, tmp_path: Path) -> None:
    store, out = tmp_path / "store.zarr", tmp_path / "out"
    shutil.copytree(reference.separated, store)
    before = tree_digest(store)
    apply = ["apply", str(reference.video), "--store", str(store), "--out", str(out)]

    interrupted = _interrupt(apply, when=lambda c: _past(c, "apply", 0), what="applied frames")
    assert message_lines(interrupted.stderr)[-1] == INTERRUPTED
    assert interrupted.started("ffmpeg")  # decoder and encoders
    assert tree_digest(store) == before
    assert not (out / "foreground.mp4").exists() and not (out / "compare.mp4").exists()
    assert _leftovers(out) == []

    assert main([*apply, "--quiet"]) == 0
    _assert_same_files(out, reference.applied, ("foreground.mp4", "compare.mp4"))
    assert tree_digest(store) == before


# --------------------------------------------------------------------------- run


@pytest.mark.slow
def test_ctrl_c_during_run_then_rerun(
    reference: Reference, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tmp_path / "job"
    job.mkdir()
    # the video was ingested in chunks of 10 frames (run's own ingest would store
    # these 300 frames as one chunk, and decompose them in well under a second)
    store = job / "store.zarr"
    shutil.copytree(reference.video_only, store)
    video_before = tree_digest(store / "video")
    run = ["run", str(reference.video), "--out", str(job), "--rank", RANK, *RANDOMIZED, *CLUSTER]

    interrupted = _interrupt(
        run, when=lambda c: _past(c, "decompose (randomized)", 0.1), what="a tenth of the decomposition"
    )
    assert message_lines(interrupted.stderr)[-1] == INTERRUPTED
    assert interrupted.started(DASK_WORKER)
    assert tree_digest(store / "video") == video_before
    assert _no_complete_factors(store)
    assert not (store / "masks").exists() and not (job / "report.json").exists()

    code, _, stderr = run_cli(capsys, *run)
    assert code == 0, stderr
    (steps,) = [line for line in stderr.splitlines() if "ingest: " in line and "report: " in line]
    assert "ingest: skipped (complete)" in steps and f"decompose: done ({FACTORS})" in steps
    assert "separate: done" in steps and "report: done" in steps
    assert tree_digest(store / "video") == video_before
    _assert_same_factors(store, reference.factored)
    _assert_same_separation(store, reference.separated)
    _assert_same_files(job, reference.out, ("background.png", "foreground.mp4", "compare.mp4"))
    assert _report(job) == _report(reference.out)
