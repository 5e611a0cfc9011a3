"""Ctrl-C that Python drops in a callback is raised again; an interrupted command exits 130."""

from __future__ import annotations

import gc
import logging
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from pipelines.cli.interrupts import REDELIVERY_DELAY_S, DroppedInterrupts, interrupts_raised_again
from tests.helpers import REPO


def _interrupt_inside_a_gc_callback() -> None:
    """Run a full collection whose callback takes SIGINT: Python drops that KeyboardInterrupt."""
    fired: list[bool] = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and not fired:
            fired.append(True)
            signal.raise_signal(signal.SIGINT)
            fired.append(True)  # the handler runs here, inside the callback

    gc.callbacks.append(callback)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(callback)


def test_an_interrupt_dropped_in_a_gc_callback_is_raised_again(capsys: pytest.CaptureFixture[str]) -> None:
    raised_after = None
    with interrupts_raised_again() as interrupts:
        started = time.monotonic()
        try:
            _interrupt_inside_a_gc_callback()
            while time.monotonic() - started < 5:
                sum(range(100))  # ordinary code, where the interrupt can be raised
        except KeyboardInterrupt:
            raised_after = time.monotonic() - started
        # at least once: a redelivery that lands in another callback (distributed's, if a
        # scheduler of an earlier test still runs in this process) is dropped and redelivered
        assert interrupts.dropped >= 1
    assert raised_after is not None, "the interrupt dropped in the callback was never raised"
    assert raised_after < 1
    assert "Exception ignored" not in capsys.readouterr().err


def _unraisable(exc_type: type[BaseException], qualname: str = "callback") -> types.SimpleNamespace:
    owner = types.SimpleNamespace(__qualname__=qualname)
    return types.SimpleNamespace(exc_type=exc_type, exc_value=exc_type(), exc_traceback=None, object=owner)


def test_close_reports_an_interrupt_not_yet_delivered_and_stops_it() -> None:
    passed_on: list[types.SimpleNamespace] = []
    interrupts = DroppedInterrupts(passed_on.append)
    interrupts.hook(_unraisable(KeyboardInterrupt))
    assert interrupts.close() is True  # the command ended first: it must still exit as interrupted
    time.sleep(5 * REDELIVERY_DELAY_S)  # and nothing is delivered after close
    assert interrupts.close() is False
    assert passed_on == []


def test_only_distributed_callbacks_failing_after_an_interrupt_are_silenced() -> None:
    passed_on: list[types.SimpleNamespace] = []
    interrupts = DroppedInterrupts(passed_on.append)
    before = _unraisable(AssertionError, "GCDiagnosis._gc_callback")
    interrupts.hook(before)  # no interrupt yet: a real failure, passed on
    interrupts.hook(_unraisable(KeyboardInterrupt))
    interrupts.close()
    after = _unraisable(AssertionError, "GCDiagnosis._gc_callback")
    other = _unraisable(ValueError, "somebody_else")
    interrupts.hook(after)  # the timer the interrupt left half-started: silenced
    interrupts.hook(other)
    assert passed_on == [before, other]


def test_a_handled_interrupt_exits_130_even_after_cpython_saw_it_unhandled(tmp_path: Path) -> None:
    """A KeyboardInterrupt out of code run from a C string made CPython exit by SIGINT (-2)."""
    (tmp_path / "interrupted_command.py").write_text(
        "import ctypes, sys\n"
        "from pipelines.cli.interrupts import forget_unhandled_interrupt\n"
        "ctypes.pythonapi.PyRun_SimpleString(b'raise KeyboardInterrupt')\n"
        "forget_unhandled_interrupt()\n"
        "sys.exit(130)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "interrupted_command"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 130, done.stderr


def test_only_the_leftover_tasks_of_a_stopped_gather_go_unreported(caplog: pytest.LogCaptureFixture) -> None:
    from distributed.client import AllExit

    asyncio_log = logging.getLogger("asyncio")
    never_retrieved = "Task exception was never retrieved"
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        with interrupts_raised_again():
            asyncio_log.error(never_retrieved, exc_info=(AllExit, AllExit(), None))
            asyncio_log.error(never_retrieved, exc_info=(ValueError, ValueError("a real failure"), None))
            asyncio_log.error("no exception attached")
        asyncio_log.error(never_retrieved, exc_info=(AllExit, AllExit(), None))  # outside a command's run
    reported = [(r.getMessage(), r.exc_info[0] if r.exc_info else None) for r in caplog.records]
    assert reported == [
        (never_retrieved, ValueError),
        ("no exception attached", None),
        (never_retrieved, AllExit),
    ]
