"""Batch systems without submitting anything: generated job scripts and every configuration check.

The job scripts are dask-jobqueue's own, built by the real job classes with a
placeholder scheduler address; the PATH checks look at folders this test fills with
the fake commands of ``tests/fake_batch.py`` (never run here).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dask.config
import pytest
import yaml

from cluster.batch import job_script
from cluster.batch_options import SYSTEMS, BatchOptions, batch_options
from cluster.errors import InvalidClusterOptionError, TLSConfigurationError
from cluster.jobqueue import load_jobqueue
from cluster.options import ClusterOptions
from tests.fake_batch import install
from tests.helpers import REPO, assert_one_line_error, run_cli

EXAMPLE_CONFIG = REPO / "cluster" / "deploy" / "hpc" / "jobqueue.yaml"


@pytest.fixture
def on_login_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sbatch, scancel, qsub and qdel on PATH (fakes: these tests never call them)."""
    for system in SYSTEMS:
        fake = install(tmp_path / system, system)
        monkeypatch.setenv("PATH", f"{fake.bin}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture
def no_jobqueue_config() -> Iterator[None]:
    """Only dask-jobqueue's defaults, whatever the machine's own configuration says."""
    load_jobqueue()  # its defaults, in dask's configuration

    defaults = {
        system: {**dask.config.get(f"jobqueue.{system}"), "cores": None, "memory": None, "interface": None}
        for system in SYSTEMS
    }
    with dask.config.set({"jobqueue": defaults}):
        yield


def _options(**changes: object) -> BatchOptions:
    values: dict[str, object] = {
        "system": "slurm",
        "jobs": 2,
        "job_cores": 8,
        "job_memory": "32GiB",
        "walltime": "02:00:00",
        "queue": "compute",
        "account": "proj42",
        "interface": "lo",
    }
    values.update(changes)
    return BatchOptions(**values)  # type: ignore[arg-type]


def _error(options: BatchOptions | ClusterOptions, kind: type[Exception] = InvalidClusterOptionError) -> str:
    with pytest.raises(kind) as info:
        options.validate()
    message = str(info.value)
    assert "\n" not in message
    return message


def _bash_syntax_ok(script: str, folder: Path) -> None:
    path = folder / "job.sh"
    path.write_text(script)
    subprocess.run(["bash", "-n", str(path)], check=True)


@pytest.mark.usefixtures("no_jobqueue_config")
def test_slurm_job_script_asks_for_what_was_given(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    script = job_script(
        _options(job_directory=str(logs), job_extra=("--constraint=skylake", "--exclusive"), interface="ib0")
    )
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    for directive in (
        "#SBATCH -p compute",
        "#SBATCH -A proj42",
        "#SBATCH -n 1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=32G",
        "#SBATCH -t 02:00:00",
        f"#SBATCH -o {logs}/dask-worker-%J.out",
        f"#SBATCH -e {logs}/dask-worker-%J.err",
        "#SBATCH --constraint=skylake",
        "#SBATCH --exclusive",
    ):
        assert directive in lines, script
    assert lines.index("#SBATCH --constraint=skylake") < lines.index("#SBATCH --exclusive")
    # the workers run where vidsvd was started, so relative store paths agree
    assert f"cd {os.getcwd()}" in lines
    worker = lines[-1]
    assert worker.startswith(
        f"{sys.executable} -m distributed.cli.dask_worker tcp://<scheduler-address>:8786"
    )
    # 8 cores: dask-jobqueue's split into 4 processes of 2 threads, 8 GiB each
    assert "--nthreads 2" in worker and "--nworkers 4" in worker and "--memory-limit 8.00GiB" in worker
    assert "--interface ib0" in worker and "--nanny" in worker
    assert lines.index(f"cd {os.getcwd()}") < len(lines) - 1
    assert logs.is_dir()  # dask-jobqueue makes the logs' folder
    _bash_syntax_ok(script, tmp_path)


@pytest.mark.usefixtures("no_jobqueue_config")
def test_pbs_job_script_asks_for_what_was_given(tmp_path: Path) -> None:
    logs = tmp_path / "pbs-logs"
    script = job_script(
        _options(system="pbs", queue="workq", job_directory=str(logs), job_extra=("-l place=scatter",))
    )
    lines = script.splitlines()
    for directive in (
        "#PBS -q workq",
        "#PBS -A proj42",
        "#PBS -l select=1:ncpus=8:mem=32GB",
        "#PBS -l walltime=02:00:00",
        f"#PBS -o {logs}/",
        f"#PBS -e {logs}/",
        "#PBS -l place=scatter",
    ):
        assert directive in lines, script
    assert f"cd {os.getcwd()}" in lines
    assert "-m distributed.cli.dask_worker tcp://<scheduler-address>:8786" in lines[-1]
    assert "--interface lo" in lines[-1]
    _bash_syntax_ok(script, tmp_path)


@pytest.mark.usefixtures("no_jobqueue_config")
def test_one_core_job_runs_one_single_threaded_worker() -> None:
    worker = job_script(_options(job_cores=1, job_memory="1GiB")).splitlines()[-1]
    assert "--nthreads 1" in worker and "--memory-limit 1.00GiB" in worker
    assert "--nworkers" not in worker


@pytest.mark.usefixtures("no_jobqueue_config")
def test_walltime_defaults_to_dask_jobqueues() -> None:
    assert "#SBATCH -t 00:30:00" in job_script(_options(walltime=None)).splitlines()


@pytest.mark.usefixtures("no_jobqueue_config")
def test_flags_win_over_the_configuration_and_directives_add_up() -> None:
    config = {
        "jobqueue.slurm.cores": 4,
        "jobqueue.slurm.memory": "8GiB",
        "jobqueue.slurm.interface": "lo",
        "jobqueue.slurm.queue": "short",
        "jobqueue.slurm.account": "site-account",
        "jobqueue.slurm.job-extra-directives": ["--exclusive"],
        "jobqueue.slurm.job-script-prologue": ["module load python"],
    }
    with dask.config.set(config):
        script = job_script(BatchOptions(system="slurm", queue="long", job_extra=("--gres=gpu:1",)))
    lines = script.splitlines()
    assert "#SBATCH -p long" in lines and "#SBATCH -p short" not in lines
    assert "#SBATCH -A site-account" in lines
    assert "#SBATCH --cpus-per-task=4" in lines and "#SBATCH --mem=8G" in lines
    assert lines.index("#SBATCH --exclusive") < lines.index("#SBATCH --gres=gpu:1")
    assert lines.index("module load python") < lines.index(f"cd {os.getcwd()}")
    assert "--interface lo" in lines[-1]


@pytest.mark.usefixtures("no_jobqueue_config")
@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_the_example_configuration_makes_a_complete_job_script(system: str) -> None:
    example = yaml.safe_load(EXAMPLE_CONFIG.read_text())["jobqueue"]
    assert set(example) == set(SYSTEMS)
    settings = example[system]
    with dask.config.set({f"jobqueue.{system}.{key}": value for key, value in settings.items()}):
        script = job_script(BatchOptions(system=system, jobs=3))
    worker = script.splitlines()[-1]
    assert f"--interface {settings['interface']}" in worker
    assert f"--nworkers {settings['processes']}" in worker
    assert "--local-directory $TMPDIR" in worker
    assert settings["queue"] in script and settings["walltime"] in script


@pytest.mark.usefixtures("on_login_node", "no_jobqueue_config")
@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_complete_options_pass(system: str) -> None:
    ClusterOptions(batch=_options(system=system)).validate()
    ClusterOptions(batch=_options(system=system, walltime=None, queue=None, account=None)).validate()


@pytest.mark.usefixtures("on_login_node", "no_jobqueue_config")
@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        ({"jobs": 0}, ["--jobs must be an integer >= 1, got 0"]),
        ({"jobs": -3}, ["--jobs", "-3"]),
        ({"jobs": True}, ["--jobs", "True"]),
        ({"jobs": 1.5}, ["--jobs", "1.5"]),
        ({"job_cores": 0}, ["--job-cores 0 must be an integer >= 1"]),
        ({"job_cores": 2.5}, ["--job-cores 2.5"]),
        ({"job_cores": None}, ["--cluster slurm needs --job-cores", "jobqueue.slurm.cores"]),
        ({"job_memory": None}, ["--cluster slurm needs --job-memory", "jobqueue.slurm.memory"]),
        ({"job_memory": "lots"}, ["--job-memory lots is not a size", "32GiB"]),
        ({"job_memory": "4 parsecs"}, ["--job-memory 4 parsecs is not a size"]),
        ({"job_memory": "0"}, ["--job-memory 0 must be positive"]),
        ({"job_memory": "-1GB"}, ["--job-memory -1GB"]),
        ({"job_memory": "16"}, ["--job-memory 16 is only 16 B", "with its unit"]),
        ({"walltime": "1h"}, ["--walltime 1h is not a walltime", "HH:MM:SS"]),
        ({"walltime": "25:00"}, ["--walltime 25:00 is not a walltime"]),
        ({"walltime": "01:60:00"}, ["--walltime 01:60:00 is not a walltime"]),
        ({"walltime": "00:00:00"}, ["--walltime 00:00:00 is zero"]),
        (
            {"system": "pbs", "walltime": "1-00:00:00"},
            ["--walltime 1-00:00:00 is not a walltime PBS takes; give HH:MM:SS like 24:00:00"],
        ),
        ({"queue": "a b"}, ["--queue a b must be one word"]),
        ({"account": "x\ny"}, ["--account", "must be one word"]),
        ({"job_extra": ("#SBATCH --exclusive",)}, ["without #SBATCH"]),
        ({"system": "pbs", "job_extra": ("#PBS -l place=scatter",)}, ["without #PBS"]),
        ({"job_extra": ("",)}, ["--job-extra '' is not a directive"]),
        ({"job_extra": ("--a\n--b",)}, ["is not a directive", "one option per flag"]),
        ({"interface": None}, ["--cluster slurm needs --interface", "lo", "the scheduler listens there"]),
        ({"interface": "nope0"}, ["--interface nope0 is not a network interface of this machine", "lo"]),
        ({"interface": "ib 0"}, ["--interface ib 0 must be one word"]),
        ({"start_timeout_s": 0}, ["--job-start-timeout must be a positive number of seconds, got 0"]),
        ({"start_timeout_s": float("nan")}, ["--job-start-timeout", "nan"]),
        ({"system": "lsf"}, ["--cluster lsf is not a batch system vidsvd knows; give slurm or pbs"]),
    ],
)
def test_bad_options_are_refused_in_one_line(changes: dict[str, object], fragments: list[str]) -> None:
    message = _error(ClusterOptions(batch=_options(**changes)))
    for fragment in fragments:
        assert fragment in message


@pytest.mark.usefixtures("on_login_node", "no_jobqueue_config")
@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("memory", "lots", "jobqueue.slurm.memory 'lots' in dask's configuration is not a size"),
        ("cores", 0, "jobqueue.slurm.cores 0 in dask's configuration must be an integer >= 1"),
        ("walltime", "2h", "jobqueue.slurm.walltime '2h' in dask's configuration is not a walltime"),
        ("interface", "nope0", "--interface nope0 is not a network interface"),
    ],
)
def test_bad_configuration_values_name_their_key(key: str, value: object, fragment: str) -> None:
    config = {"jobqueue.slurm.cores": 2, "jobqueue.slurm.memory": "4GiB", "jobqueue.slurm.interface": "lo"}
    config[f"jobqueue.slurm.{key}"] = value
    with dask.config.set(config):
        assert fragment in _error(ClusterOptions(batch=BatchOptions(system="slurm")))


@pytest.mark.usefixtures("no_jobqueue_config")
@pytest.mark.parametrize(
    ("system", "present", "fragment"),
    [
        (
            "slurm",
            [],
            "--cluster slurm needs sbatch on PATH to submit jobs: run vidsvd on a SLURM login node",
        ),
        ("slurm", ["sbatch"], "--cluster slurm needs scancel on PATH to cancel jobs"),
        ("pbs", [], "--cluster pbs needs qsub on PATH to submit jobs: run vidsvd on a PBS login node"),
        ("pbs", ["qsub"], "--cluster pbs needs qdel on PATH to cancel jobs"),
    ],
)
def test_missing_batch_commands_are_named(
    system: str, present: list[str], fragment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    for command in present:
        (folder / command).write_text("#!/bin/sh\nexit 0\n")
        (folder / command).chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))
    assert fragment in _error(ClusterOptions(batch=_options(system=system)))


@pytest.mark.usefixtures("on_login_node", "no_jobqueue_config")
def test_a_job_directory_that_is_a_file_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "logs"
    a_file.write_text("")
    message = _error(ClusterOptions(batch=_options(job_directory=str(a_file))))
    assert f"--job-directory {a_file} is a file" in message


def test_without_dask_jobqueue_the_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # import fails as if not installed
    message = _error(ClusterOptions(batch=_options()))
    assert message == "--cluster slurm needs dask-jobqueue: pip install 'vidsvd[hpc]'"


@pytest.mark.usefixtures("on_login_node", "no_jobqueue_config")
@pytest.mark.parametrize(
    ("extra", "kind", "fragments"),
    [
        (
            {"scheduler": "tcp://127.0.0.1:8786"},
            InvalidClusterOptionError,
            ["--cluster slurm starts its own dask scheduler; drop --scheduler tcp://127.0.0.1:8786"],
        ),
        (
            {"n_workers": 2, "memory_limit": "2GB"},
            InvalidClusterOptionError,
            ["--workers, --memory-limit only apply to the embedded cluster", "--jobs, --job-cores"],
        ),
        ({"threads_per_worker": 2}, InvalidClusterOptionError, ["--threads-per-worker"]),
        ({"local_directory": "scratch"}, InvalidClusterOptionError, ["--local-directory"]),
        ({"tls_ca_file": "ca.pem"}, TLSConfigurationError, ["TLS files apply to an existing scheduler only"]),
    ],
)
def test_batch_excludes_the_other_deployments(
    extra: dict[str, object], kind: type[Exception], fragments: list[str]
) -> None:
    message = _error(ClusterOptions(batch=_options(), **extra), kind)  # type: ignore[arg-type]
    for fragment in fragments:
        assert fragment in message


def test_batch_flags_without_a_system_are_refused() -> None:
    assert batch_options(None, jobs=None, job_extra=None) is None
    assert batch_options(None) is None
    with pytest.raises(InvalidClusterOptionError) as info:
        batch_options(None, jobs=2, walltime="01:00:00", job_extra=["--exclusive"], queue=None)
    assert str(info.value) == (
        "--jobs, --walltime, --job-extra only apply to a batch system;"
        " add --cluster slurm or --cluster pbs, or drop them"
    )
    options = batch_options("pbs", jobs=3, job_extra=["-l place=scatter"], queue=None)
    assert options == BatchOptions(system="pbs", jobs=3, job_extra=("-l place=scatter",))


# The command line: the same checks, one line on stderr, exit status 2, before any work.


@pytest.mark.usefixtures("no_jobqueue_config")
@pytest.mark.parametrize(
    ("flags", "fragments"),
    [
        (["--jobs", "2"], ["--jobs only apply to a batch system; add --cluster slurm"]),
        (["--job-extra=--exclusive", "--queue", "q"], ["--queue, --job-extra only apply to a batch system"]),
        (["--cluster", "slurm", "--workers", "2"], ["--workers only apply to the embedded cluster"]),
        (
            ["--cluster", "slurm", "--scheduler", "tcp://127.0.0.1:8786"],
            ["--cluster slurm starts its own dask scheduler"],
        ),
        (["--cluster", "lsf"], ["--cluster", "invalid choice: 'lsf'"]),
        (["--cluster", "slurm", "--jobs", "0"], ["--jobs must be at least 1"]),
        (["--cluster", "slurm", "--job-cores", "two"], ["--job-cores must be a whole number"]),
        (["--cluster", "slurm", "--job-start-timeout", "-5"], ["--job-start-timeout must be greater than 0"]),
        (
            ["--cluster", "slurm", "--job-cores", "2", "--job-memory", "8GiB", "--interface", "lo"],
            ["--cluster slurm needs sbatch on PATH to submit jobs: run vidsvd on a SLURM login node"],
        ),
    ],
)
def test_cli_refuses_bad_batch_options_in_one_line(
    flags: list[str],
    fragments: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no batch system here
    store = tmp_path / "never-made.zarr"
    status, _, err = run_cli(capsys, "decompose", "--store", str(store), "--rank", "2", *flags)
    assert status == 2
    assert_one_line_error(err, *fragments)
    assert not store.exists()


@pytest.mark.usefixtures("on_login_node", "no_jobqueue_config")
@pytest.mark.parametrize("command", ["decompose", "separate", "report", "run", "demo"])
def test_every_computing_command_takes_the_batch_flags(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The flags reach the cluster options of each command: a bad walltime stops each one."""
    target = {
        "decompose": ["--store", str(tmp_path / "s.zarr"), "--rank", "2"],
        "separate": ["--store", str(tmp_path / "s.zarr")],
        "report": ["--store", str(tmp_path / "s.zarr")],
        "run": [str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "out")],
        "demo": ["--out", str(tmp_path / "demo")],
    }[command]
    flags = ["--cluster", "pbs", "--job-cores", "2", "--job-memory", "4GiB", "--interface", "lo"]
    status, _, err = run_cli(capsys, command, *target, *flags, "--walltime", "3 days")
    assert status == 2
    assert_one_line_error(err, "--walltime 3 days is not a walltime; give HH:MM:SS like 02:00:00")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pbs", "slurm"]  # nothing made


def test_help_lists_the_batch_flags(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_cli(capsys, "run", "--help")
    assert status == 0
    text = " ".join(out.split())
    for flag in (
        "--cluster {pbs,slurm}",
        "--jobs N",
        "--job-cores C",
        "--job-memory SIZE",
        "--walltime HH:MM:SS",
        "--queue NAME",
        "--account NAME",
        "--job-directory DIR",
        "--job-extra DIRECTIVE",
        "--interface NAME",
        "--job-start-timeout S",
    ):
        assert flag in text
