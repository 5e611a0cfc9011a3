"""Real `dask scheduler` and `dask worker` processes on 127.0.0.1, started by tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 60.0


@dataclass
class ExternalCluster:
    folder: Path
    address: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    worker_directories: list[Path] = field(default_factory=list)

    def start(
        self,
        name: str,
        module: str,
        *args: str,
        env: dict[str, str] | None = None,
        wrapper: Sequence[str] = (),
    ) -> subprocess.Popen[bytes]:
        """Run ``python -m MODULE ARGS``, with ``env`` (default: this one's), behind ``wrapper``."""
        log = (self.folder / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [*wrapper, sys.executable, "-m", module, *args],
            cwd=self.folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes.append(process)
        return process

    def start_scheduler(self, *args: str) -> None:
        scheduler_file = self.folder / "scheduler.json"
        process = self.start(
            "scheduler",
            "distributed.cli.dask_scheduler",
            "--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
            "--scheduler-file", str(scheduler_file), *args,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"dask scheduler exited: {self.logs()}")
            if scheduler_file.exists():
                try:
                    self.address = json.loads(scheduler_file.read_text())["address"]
                    return
                except (json.JSONDecodeError, KeyError):
                    pass  # written but not flushed yet
            time.sleep(0.05)
        raise RuntimeError(f"dask scheduler did not start within {START_TIMEOUT_S} s: {self.logs()}")

    def start_worker(
        self,
        name: str,
        memory_limit: str,
        *args: str,
        env: dict[str, str] | None = None,
        wrapper: Sequence[str] = (),
    ) -> None:
        directory = self.folder / name
        directory.mkdir()
        self.worker_directories.append(directory)
        self.start(
            name,
            "distributed.cli.dask_worker",
            "--scheduler-file", str(self.folder / "scheduler.json"), "--host", "127.0.0.1",
            "--nthreads", "1", "--memory-limit", memory_limit, "--no-dashboard",
            "--local-directory", str(directory), *args,
            env=env,
            wrapper=wrapper,
        )  # fmt: skip

    def logs(self) -> str:
        return " | ".join(p.read_text(errors="replace")[-2000:] for p in sorted(self.folder.glob("*.log")))

    def stop(self) -> None:
        """Workers first, then the scheduler (a worker losing its scheduler waits 8 s)."""
        workers, scheduler = self.processes[1:], self.processes[:1]
        for group in (workers, scheduler):
            for process in group:
                if process.poll() is None:
                    process.terminate()
            for process in group:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=15)
                # the worker CLI runs a nanny that spawns the worker: end the whole session
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
