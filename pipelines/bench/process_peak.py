"""Run one command as a user would and measure its wall time and peak memory.

The peak is that of the command's whole process tree (the command, its ffmpeg
children, its worker processes), summed.  Three measurements bound it from below and
the largest is reported:

- the summed resident memory of the tree, sampled at intervals that start at
  :data:`FIRST_SAMPLE_INTERVAL_S` and double up to the caller's interval (so that a
  command of a fraction of a second is still seen at work, and a long one is not
  slowed by its sampler);
- the largest per-process high-water mark the kernel reported in any sample
  (``VmHWM``, Linux), which catches a process's peak between two samples;
- the high-water mark of the command that ``wait4`` returns when it is reaped.  The
  kernel counts in a process's high-water mark the memory of its parent at the
  moment it started it (the child shares or copies it until ``exec``), so the
  command is started by a small launcher (:data:`_LAUNCHER`, the standard library
  only) which reaps it and reports that figure: the caller's size, however large,
  never reaches it, and the launcher's own few megabytes are its floor.  The
  launcher itself is not counted in the tree.

The wall time is the launcher's, from just before it starts the command to its
reaping: it excludes the launcher's own start and ends when the command does, not at
the next sample.  The CPU time is the user and system time that ``wait4`` returns for
the command: its own and that of every descendant reaped by its parent (ffmpeg, worker
processes that a cluster closes); a descendant left unreaped is not counted.  CPU time
over wall time is how many cores the command kept busy on average.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import psutil

__all__ = [
    "FIRST_SAMPLE_INTERVAL_S",
    "PEAK_SAMPLE_INTERVAL_S",
    "CommandCost",
    "busy_cores",
    "measure_command",
    "run_with_peak_rss",
]

PEAK_SAMPLE_INTERVAL_S: Final = 0.1
"""Default longest interval, in seconds, between two samples of the tree's memory.
Each sample walks the whole process table, so its cost grows with the machine's
number of processes; sampling ten times faster cost a measurable share of a core and
found the same peak of a long decompose within 0.1 GiB (README, benchmarks).  The
peaks that matter (partials and chunks held by tasks) last far longer than this."""

FIRST_SAMPLE_INTERVAL_S: Final = 0.01
"""The interval after the first sample; it doubles up to the longest interval."""

_MAX_RSS_BYTES_PER_UNIT: Final = 1 if sys.platform == "darwin" else 1024
"""``ru_maxrss`` is in bytes on macOS and in KiB on Linux."""


_LAUNCHER: Final = """
import os, signal, subprocess, sys, time
report = int(sys.argv[1])
started = time.monotonic()
try:
    command = subprocess.Popen(sys.argv[2:])
except OSError as error:
    sys.exit(f"cannot start {sys.argv[2]}: {error}")
for number in (signal.SIGINT, signal.SIGTERM):
    signal.signal(number, lambda received, _: command.send_signal(received))
_, status, usage = os.wait4(command.pid, 0)
cpu = usage.ru_utime + usage.ru_stime
os.write(report, f"{usage.ru_maxrss} {time.monotonic() - started!r} {cpu!r}".encode())
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""
"""Starts the command, passes on SIGINT and SIGTERM, reaps it and writes its
``ru_maxrss``, its wall seconds (from just before its start to its reaping, so
without the launcher's own start) and its CPU seconds (user and system, with its
reaped descendants') to the descriptor named by its first argument; exits with the
command's status (128 + the signal's number when a signal ended it)."""


@dataclass(frozen=True, kw_only=True)
class _Reaped:
    exit_code: int
    peak_bytes: int


@dataclass(frozen=True, kw_only=True)
class CommandCost:
    """What one command took: wall seconds, peak memory of its tree, CPU seconds.

    ``cpu_s`` is None when the launcher could not report it.
    """

    wall_s: float
    peak_bytes: int
    cpu_s: float | None

    @property
    def cores(self) -> float | None:
        """CPU seconds per wall second: the cores the command kept busy on average."""
        return busy_cores(cpu_s=self.cpu_s, wall_s=self.wall_s)


def busy_cores(*, cpu_s: float | None, wall_s: float) -> float | None:
    """CPU seconds over wall seconds: the cores kept busy on average (None without a CPU time)."""
    return None if cpu_s is None or wall_s <= 0 else cpu_s / wall_s


def run_with_peak_rss(
    argv: Sequence[str], *, interval_s: float = PEAK_SAMPLE_INTERVAL_S
) -> tuple[float, int]:
    """Run ``argv``; return (wall seconds, peak summed RSS of it and its children in bytes).

    :func:`measure_command` without the CPU time.
    """
    cost = measure_command(argv, interval_s=interval_s)
    return cost.wall_s, cost.peak_bytes


def measure_command(argv: Sequence[str], *, interval_s: float = PEAK_SAMPLE_INTERVAL_S) -> CommandCost:
    """Run ``argv``; return its wall time, the peak summed RSS of its tree and its CPU time.

    The command's stdout is discarded and its stderr kept in a temporary file (never a
    pipe, which a talkative command could fill and block on).

    Raises
    ------
    RuntimeError
        The command exited with a non-zero status; the message holds its stderr.
    """
    started = time.perf_counter()
    report_read, report_write = os.pipe()
    try:
        with tempfile.TemporaryFile() as stderr_file:
            launcher = subprocess.Popen(
                [sys.executable, "-I", "-c", _LAUNCHER, str(report_write), *argv],
                stdout=subprocess.DEVNULL,
                stderr=stderr_file,
                pass_fds=(report_write,),
            )
            os.close(report_write)
            report_write = -1
            try:
                reaped = _sample_until_reaped(launcher.pid, longest_interval_s=interval_s)
            except BaseException:
                _kill_tree(launcher)
                raise
            launcher_elapsed = time.perf_counter() - started
            launcher.returncode = reaped.exit_code  # reaped here, not by Popen.wait
            if reaped.exit_code != 0:
                stderr_file.seek(0)
                stderr = stderr_file.read().decode(errors="replace")
                reason = stderr.strip() or f"exit status {reaped.exit_code}"
                raise RuntimeError(f"{' '.join(argv)} failed: {reason}")
            command_peak, command_elapsed, command_cpu = _reported(report_read)
    finally:
        os.close(report_read)
        if report_write >= 0:
            os.close(report_write)
    elapsed = launcher_elapsed if command_elapsed is None else command_elapsed
    return CommandCost(wall_s=elapsed, peak_bytes=max(reaped.peak_bytes, command_peak), cpu_s=command_cpu)


def _sample_until_reaped(pid: int, *, longest_interval_s: float) -> _Reaped:
    """Sample the tree under the launcher ``pid`` (not the launcher) until it is reaped."""
    launcher = psutil.Process(pid)
    exit_signal = _exit_signal(pid)
    summed_peak = 0
    process_peak = 0
    interval_s = min(FIRST_SAMPLE_INTERVAL_S, longest_interval_s)
    try:
        while True:
            reaped_pid, status, _ = os.wait4(pid, os.WNOHANG)
            if reaped_pid == pid:
                break
            summed, largest = _sample_tree(launcher)
            summed_peak = max(summed_peak, summed)
            process_peak = max(process_peak, largest)
            if exit_signal is None:
                time.sleep(interval_s)
            else:
                select.select([exit_signal], [], [], interval_s)
            interval_s = min(2 * interval_s, longest_interval_s)
    finally:
        if exit_signal is not None:
            os.close(exit_signal)
    return _Reaped(exit_code=os.waitstatus_to_exitcode(status), peak_bytes=max(summed_peak, process_peak))


def _reported(report_read: int) -> tuple[int, float | None, float | None]:
    """(``ru_maxrss`` in bytes, wall seconds, CPU seconds) of the command as the launcher wrote them.

    (0, None, None) when the launcher wrote nothing readable.
    """
    try:
        max_rss, seconds, cpu = os.read(report_read, 128).split()
        return int(max_rss) * _MAX_RSS_BYTES_PER_UNIT, float(seconds), float(cpu)
    except ValueError:
        return 0, None, None


def _kill_tree(launcher: subprocess.Popen[bytes]) -> None:
    """Kill the command, its children and the launcher; reap the launcher."""
    try:
        tree = psutil.Process(launcher.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    for process in tree:
        try:
            process.kill()
        except psutil.Error:
            continue
    launcher.kill()
    launcher.wait()


def _sample_tree(launcher: psutil.Process) -> tuple[int, int]:
    """(Summed RSS of the tree under the launcher, largest per-process high-water mark) now, in bytes."""
    summed, largest = 0, 0
    try:
        tree = launcher.children(recursive=True)
    except psutil.Error:
        return 0, 0
    for process in tree:
        try:
            summed += process.memory_info().rss
            largest = max(largest, _high_water_mark(process.pid))
        except psutil.Error:
            continue
    return summed, largest


def _high_water_mark(pid: int) -> int:
    """The process's peak RSS since its ``exec`` in bytes (Linux ``VmHWM``), else 0."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def _exit_signal(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux), else None."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        return int(pidfd_open(pid))
    except OSError:
        return None
