"""A FAKE batch system for tests: `sbatch`/`squeue`/`scancel` and `qsub`/`qstat`/`qdel` shims.

This is not SLURM nor PBS.  There is no queue, no node and no resource limit: the
submit command runs the submitted job script at once on this machine, as a
background process in its own session (so the real dask workers start from the real
job script dask-jobqueue wrote), and the cancel command kills that session with
SIGTERM, then SIGKILL, as ``scancel`` does by default.  Like SLURM, a job runs in the
directory it was submitted from unless told otherwise; here it deliberately runs in
its own job folder instead (as PBS jobs start in $HOME), so a job script that does not
``cd`` back to the submission folder would break relative paths.  Its ``-o``/``-e``
directives (SLURM's ``%J`` expanded, PBS's folder form) say where its output goes.

What the shims did is kept in a state folder (``FAKE_BATCH_STATE``), one folder per
job: the script as submitted, the session id of its process, ``cancelled`` once the
cancel command ran.  ``FAKE_BATCH_REFUSE=message`` makes the submit command fail
with that message on stderr, as ``sbatch`` does for a bad partition;
``FAKE_BATCH_HOLD=1`` accepts jobs but never starts them (a full queue).

Run as ``python fake_batch.py COMMAND ARGS...``; :func:`install` writes one small
wrapper per command into a folder to put first on PATH.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

COMMANDS = {
    "slurm": ("sbatch", "squeue", "scancel"),
    "pbs": ("qsub", "qstat", "qdel"),
}
_SUBMIT = {"sbatch", "qsub"}
_CANCEL = {"scancel", "qdel"}
_STATUS = {"squeue", "qstat"}
#: How long the cancel command waits after SIGTERM before it kills (scancel's KillWait is 30 s).
_KILL_WAIT_S = 10.0


@dataclass(frozen=True)
class FakeJob:
    """One submitted job, as the state folder records it."""

    folder: Path

    @property
    def id(self) -> str:
        return self.folder.name

    @property
    def script(self) -> str:
        return (self.folder / "script.sh").read_text()

    @property
    def session(self) -> int | None:
        path = self.folder / "session"
        return int(path.read_text()) if path.exists() else None

    @property
    def cancelled(self) -> bool:
        return (self.folder / "cancelled").exists()

    def alive(self) -> bool:
        """True while any process of the job's session runs."""
        return self.session is not None and _session_alive(self.session)


@dataclass(frozen=True)
class FakeBatch:
    """The shims of one test: the folder to put on PATH and the state folder."""

    bin: Path
    state: Path

    def environment(self) -> dict[str, str]:
        """Variables to set for the shims to be found and to record their state."""
        return {
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "FAKE_BATCH_STATE": str(self.state),
        }

    def jobs(self) -> list[FakeJob]:
        return sorted((FakeJob(p) for p in (self.state / "jobs").iterdir()), key=lambda j: int(j.id))

    def kill_all(self) -> None:
        """Clean-up for a failed test: kill every job that still runs."""
        for job in self.jobs():
            if job.session is not None:
                _kill_session(job.session, wait_s=0)


def install(folder: Path, system: str) -> FakeBatch:
    """Write the wrappers of ``system`` (``slurm`` or ``pbs``) into ``folder/bin``."""
    folder = folder.resolve()  # the jobs run in other folders
    bin_folder, state = folder / "bin", folder / "state"
    bin_folder.mkdir(parents=True)
    (state / "jobs").mkdir(parents=True)
    for command in COMMANDS[system]:
        wrapper = bin_folder / command
        wrapper.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" {command} "$@"\n'
        )
        wrapper.chmod(0o755)
    return FakeBatch(bin=bin_folder, state=state)


def _session_alive(session: int) -> bool:
    try:
        os.killpg(session, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_session(session: int, *, wait_s: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(session, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and _session_alive(session):
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(session, signal.SIGKILL)


def _output_path(script: str, command: str, job: Path, stream: str) -> Path:
    """Where a directive sends the job's stdout (``o``) or stderr (``e``)."""
    prefix = "#SBATCH" if command == "sbatch" else "#PBS"
    match = re.search(rf"^{prefix} -{stream} (\S+)$", script, re.M)
    if match is None:
        return job / f"job.{stream}"
    target = match.group(1).replace("%J", job.name).replace("%j", job.name)
    if target.endswith("/"):  # PBS: a folder
        target += f"{job.name}.{stream}"
    return Path(target)


def _submit(command: str, args: list[str], state: Path) -> int:
    refusal = os.environ.get("FAKE_BATCH_REFUSE")
    if refusal:
        print(refusal, file=sys.stderr)
        return 1
    script = Path(args[-1]).read_text()  # the caller deletes its file once we return
    number = 1
    while True:  # jobs of one scale-up are submitted concurrently
        job = state / "jobs" / str(number)
        try:
            job.mkdir()
            break
        except FileExistsError:
            number += 1
    (job / "script.sh").write_text(script)
    if not os.environ.get("FAKE_BATCH_HOLD"):
        with (
            _output_path(script, command, job, "o").open("ab") as out,
            _output_path(script, command, job, "e").open("ab") as err,
        ):
            process = subprocess.Popen(
                ["bash", str(job / "script.sh")],
                cwd=job,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        (job / "session").write_text(str(process.pid))
    print(f"Submitted batch job {number}" if command == "sbatch" else f"{number}.fake-pbs-server")
    return 0


def _cancel(args: list[str], state: Path) -> int:
    for job_id in args:
        job = FakeJob(state / "jobs" / job_id.split(".")[0])
        if not job.folder.is_dir():
            print(f"invalid job id {job_id}", file=sys.stderr)
            return 1
        (job.folder / "cancelled").touch()
        if job.session is not None:
            _kill_session(job.session, wait_s=_KILL_WAIT_S)
    return 0


def _status(state: Path) -> int:
    for folder in sorted((state / "jobs").iterdir(), key=lambda p: int(p.name)):
        job = FakeJob(folder)
        if job.alive():
            print(f"{job.id} R")
        elif job.session is None and not job.cancelled:
            print(f"{job.id} PD")  # held: never started
    return 0


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    state = Path(os.environ["FAKE_BATCH_STATE"])
    if command in _SUBMIT:
        return _submit(command, args, state)
    if command in _CANCEL:
        return _cancel(args, state)
    if command in _STATUS:
        return _status(state)
    print(f"fake batch system: unknown command {command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
