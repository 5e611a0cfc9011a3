"""The benchmarks' measurement of one command: wall time and peak memory of its tree."""

from __future__ import annotations

import sys

import pytest

from pipelines.bench.process_peak import run_with_peak_rss

_MIB = 2**20


def test_a_command_shorter_than_a_sample_still_has_its_peak() -> None:
    # The command ends long before the first interval would: its peak comes from the
    # early samples or from the kernel's high-water mark of the reaped command.
    elapsed, peak = run_with_peak_rss([sys.executable, "-c", "held = b'1' * 300_000_000"], interval_s=30.0)
    assert peak >= 300_000_000
    assert elapsed < 10.0  # the wait ends with the command, not at the next sample


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


def test_a_failing_command_raises_with_its_error_output() -> None:
    talkative = "import sys\nsys.stderr.write('x' * 1_000_000)\nsys.exit('the reason')"
    with pytest.raises(RuntimeError, match="the reason"):
        run_with_peak_rss([sys.executable, "-c", talkative])
