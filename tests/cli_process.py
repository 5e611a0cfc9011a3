"""`vidsvd` as a separate process, its stderr read while it runs: for tests that disturb it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_BAR = re.compile(r"(?P<label>[^\r\n:]+):\s+\d+%\|[^|]*\|\s*(?P<done>\d+)/(?P<total>\d+)")
# tqdm ends a bar with "[elapsed<remaining, rate]" or "[elapsed, rate]" (or "[elapsed]",
# a bar opened on work already done), and no newline: a message written after it
# starts on the same line
_BAR_PREFIX = re.compile(
    r"^.*?: (?:.*?\[\d\d:\d\d(?::\d\d)?(?:<[^,\]]*)?, [^\]]*\]|\s*\d+%\|[^|]*\| *\d+/\d+ \[\d\d:\d\d(?::\d\d)?\])"
)


@dataclass
class CliProcess:
    """``python -m pipelines.cli ARGV`` in its own session (as a shell job), stderr collected.

    Its own session makes it the leader of a process group that holds it and every
    process it starts (embedded dask workers, ffmpeg), like the foreground job a
    terminal sends Ctrl-C to.
    """

    argv: list[str]
    process: subprocess.Popen[bytes] = field(init=False)
    _chunks: list[bytes] = field(default_factory=list, init=False)
    _reader: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", *self.argv],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        descriptor = self.process.stderr.fileno()
        while chunk := os.read(descriptor, 4096):
            self._chunks.append(chunk)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def stderr(self) -> str:
        """Everything written to stderr so far, progress bars' carriage returns as newlines."""
        return b"".join(self._chunks).decode("utf-8", "replace").replace("\r", "\n")

    def running(self) -> bool:
        return self.process.poll() is None

    def progress(self, label: str) -> tuple[int, int] | None:
        """The last (done, total) the progress bar ``label`` showed, or None before it showed any."""
        found = [m for m in _BAR.finditer(self.stderr) if m.group("label").strip() == label]
        return (int(found[-1]["done"]), int(found[-1]["total"])) if found else None

    def wait_until(self, condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
        """Poll ``condition`` every 5 ms while the command runs; fail if it ends or times out first."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if not self.running():
                raise AssertionError(f"the command ended before {what}: {self.stderr[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout_s} s: {self.stderr[-2000:]}")
            time.sleep(0.005)

    def interrupt(self) -> None:
        """Ctrl-C as a terminal sends it: SIGINT to the whole process group."""
        os.killpg(self.pid, signal.SIGINT)

    def wait(self, timeout_s: float = 120.0) -> int:
        code = self.process.wait(timeout=timeout_s)
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        """Clean-up after a failed test: the whole group, at once."""
        if self.running():
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def message_lines(stderr: str) -> list[str]:
    """The lines of stderr without the progress bars, empty ones left out."""
    lines = []
    for raw in stderr.splitlines():
        line = raw
        while bar := _BAR_PREFIX.match(line):
            line = line[bar.end() :].lstrip(" ")  # tqdm pads a line shorter than the one before
        if line.strip():
            lines.append(line)
    return lines


def own_messages(argv: list[str], *, timeout_s: float) -> tuple[list[str], str]:
    """Run ``vidsvd ARGV`` as a user would, in its own process; it must exit 0.

    Returns its message lines (:func:`message_lines`), each checked to be vidsvd's own
    (``vidsvd: ...``: a library's warning or log line would show otherwise), and its
    whole stderr.
    """
    command = CliProcess(argv)
    try:
        assert command.wait(timeout_s=timeout_s) == 0, command.stderr[-3000:]
    finally:
        command.kill()
    lines = message_lines(command.stderr)
    assert lines and all(line.startswith("vidsvd: ") for line in lines), command.stderr[-3000:]
    return lines, command.stderr
