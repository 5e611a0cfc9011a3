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
- the high-water mark of the largest process of the tree that ``wait4`` returns when
  the command is reaped.  The kernel counts in it the memory of the parent at the
  moment it started the command (the child shares or copies it until ``exec``), so it
  is used only when it exceeds the whole peak of this process: then it can only be
  the command's own.

The wall time ends when the command does (a pidfd wakes the sampler on Linux), not
at the next sample.
"""

from __future__ import annotations

import os
import resource
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import psutil

__all__ = ["FIRST_SAMPLE_INTERVAL_S", "PEAK_SAMPLE_INTERVAL_S", "run_with_peak_rss"]

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


@dataclass(frozen=True, kw_only=True)
class _Reaped:
    exit_code: int
    peak_bytes: int


def run_with_peak_rss(
    argv: Sequence[str], *, interval_s: float = PEAK_SAMPLE_INTERVAL_S
) -> tuple[float, int]:
    """Run ``argv``; return (wall seconds, peak summed RSS of it and its children in bytes).

    The command's stdout is discarded and its stderr kept in a temporary file (never a
    pipe, which a talkative command could fill and block on).

    Raises
    ------
    RuntimeError
        The command exited with a non-zero status; the message holds its stderr.
    """
    started = time.perf_counter()
    with tempfile.TemporaryFile() as stderr_file:
        process = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=stderr_file)
        try:
            reaped = _sample_until_reaped(process.pid, longest_interval_s=interval_s)
        except BaseException:
            process.kill()
            process.wait()
            raise
        elapsed = time.perf_counter() - started
        process.returncode = reaped.exit_code  # reaped here, not by Popen.wait
        if reaped.exit_code != 0:
            stderr_file.seek(0)
            stderr = stderr_file.read().decode(errors="replace")
            raise RuntimeError(f"{' '.join(argv)} failed: {stderr.strip()}")
    return elapsed, reaped.peak_bytes


def _sample_until_reaped(pid: int, *, longest_interval_s: float) -> _Reaped:
    root = psutil.Process(pid)
    exit_signal = _exit_signal(pid)
    summed_peak = 0
    process_peak = 0
    interval_s = min(FIRST_SAMPLE_INTERVAL_S, longest_interval_s)
    try:
        while True:
            reaped_pid, status, usage = os.wait4(pid, os.WNOHANG)
            if reaped_pid == pid:
                break
            summed, largest = _sample_tree(root)
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
    reaped_peak = usage.ru_maxrss * _MAX_RSS_BYTES_PER_UNIT
    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _MAX_RSS_BYTES_PER_UNIT
    if reaped_peak > own_peak:
        process_peak = max(process_peak, reaped_peak)
    return _Reaped(exit_code=os.waitstatus_to_exitcode(status), peak_bytes=max(summed_peak, process_peak))


def _sample_tree(root: psutil.Process) -> tuple[int, int]:
    """(Summed RSS of the tree, largest per-process high-water mark) now, in bytes."""
    summed, largest = 0, 0
    try:
        tree = [root, *root.children(recursive=True)]
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
