"""The benchmarks' measurement of one command: wall time and peak memory of its tree."""

from __future__ import annotations

import _thread
import signal
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from pipelines.bench.process_peak import measure_command, run_with_peak_rss

_MIB = 2**20


def test_a_command_shorter_than_a_sample_still_has_its_peak() -> None:
    # The command ends long before the first interval would: its peak comes from the
    # early samples or from the kernel's high-water mark of the reaped command.
    elapsed, peak = run_with_peak_rss([sys.executable, "-c", "held = b'1' * 300_000_000"], interval_s=30.0)
    assert peak >= 300_000_000
    assert elapsed < 10.0  # the wait ends with the command, not at the next sample


def test_a_large_caller_does_not_hide_the_peak_of_a_short_command() -> None:
    # The kernel gives a child the high-water mark of its parent at its start; a caller
    # larger than the command must neither hide the command's peak nor lend it its own.
    ballast = b"1" * 500_000_000
    for _ in range(3):
        _, peak = run_with_peak_rss([sys.executable, "-c", "held = b'1' * 300_000_000"], interval_s=30.0)
        assert 300_000_000 <= peak < len(ballast)


def test_a_short_lived_peak_between_samples_is_seen() -> None:
    # 200 MB held for an instant, then freed; the command lives on small for a while.
    script = "import time\nheld = b'1' * 200_000_000\ndel held\ntime.sleep(0.5)"
    _, peak = run_with_peak_rss([sys.executable, "-c", script], interval_s=0.2)
    assert peak >= 200_000_000


def test_the_children_of_the_command_are_summed() -> None:
    child = "import time; held = b'1' * 150_000_000; time.sleep(1.0)"
    parent = (
        "import subprocess, sys, time\n"
        f"children = [subprocess.Popen([sys.executable, '-c', {child!r}]) for _ in range(2)]\n"
        "held = b'1' * 150_000_000\n"
        "[c.wait() for c in children]"
    )
    _, peak = run_with_peak_rss([sys.executable, "-c", parent])
    assert peak >= 3 * 150_000_000


def test_a_small_command_is_not_given_the_size_of_the_caller() -> None:
    ballast = b"1" * 400_000_000  # this process is large; the command is not
    _, peak = run_with_peak_rss([sys.executable, "-c", "import time; time.sleep(0.3)"])
    assert len(ballast) and peak < 100 * _MIB


_BUSY = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end:\n    pass"
"""A script that keeps one core busy for ``seconds`` of CPU time."""


def test_the_cpu_time_of_a_busy_command_is_counted() -> None:
    cost = measure_command([sys.executable, "-c", _BUSY.format(seconds=0.6)])
    assert cost.cpu_s is not None and 0.6 <= cost.cpu_s < cost.wall_s + 0.5
    assert cost.cores is not None and 0 < cost.cores <= 1.5


def test_a_waiting_command_uses_little_cpu() -> None:
    cost = measure_command([sys.executable, "-c", "import time; time.sleep(0.8)"])
    assert cost.wall_s >= 0.8
    assert cost.cpu_s is not None and cost.cpu_s < 0.5


def test_the_cpu_time_of_reaped_children_is_counted() -> None:
    # the command waits while two children each burn 0.4 s of CPU: the work is theirs
    child = _BUSY.format(seconds=0.4)
    parent = (
        "import subprocess, sys\n"
        f"children = [subprocess.Popen([sys.executable, '-c', {child!r}]) for _ in range(2)]\n"
        "[c.wait() for c in children]"
    )
    cost = measure_command([sys.executable, "-c", parent])
    assert cost.cpu_s is not None and cost.cpu_s >= 0.8


def test_a_failing_command_raises_with_its_error_output() -> None:
    talkative = "import sys\nsys.stderr.write('x' * 1_000_000)\nsys.exit('the reason')"
    with pytest.raises(RuntimeError, match="the reason"):
        run_with_peak_rss([sys.executable, "-c", talkative])


def test_a_command_ended_by_a_signal_is_a_failure() -> None:
    suicide = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    with pytest.raises(RuntimeError, match=f"exit status {128 + signal.SIGTERM}"):
        run_with_peak_rss([sys.executable, "-c", suicide])


def test_a_command_that_cannot_start_is_a_failure() -> None:
    with pytest.raises(RuntimeError, match="cannot start"):
        run_with_peak_rss(["vidsvd-no-such-command"])


def test_an_interrupted_measurement_kills_the_command_and_its_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pids)!r} + '.part', 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        f"os.replace({str(pids)!r} + '.part', {str(pids)!r})\n"
        "time.sleep(60)"
    )

    def press_ctrl_c_once_started() -> None:
        deadline = time.monotonic() + 60
        while not pids.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _thread.interrupt_main()

    threading.Thread(target=press_ctrl_c_once_started, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_with_peak_rss([sys.executable, "-c", script])
    started = [int(pid) for pid in pids.read_text().split()]
    assert len(started) == 2
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in started)


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
