"""Ctrl-C that Python would drop: raised again where the command can see it.

Python runs a signal's handler in the main thread at the next bytecode, whatever code
that is.  When it is a garbage-collector callback (dask.distributed installs one, in
every process that runs a scheduler or a worker: the embedded cluster's scheduler runs
in the command's process) or a weakref callback, the ``KeyboardInterrupt`` cannot
propagate: Python prints ``Exception ignored in ...`` with a traceback and goes on.
Interrupting a ``vidsvd decompose`` while it imported dask and started its cluster was
dropped so 4 times in 15 (measured); the command then ran to its end and exited 0.

:func:`interrupts_raised_again` hooks ``sys.unraisablehook`` for the command's run: a
dropped ``KeyboardInterrupt`` is not printed, and is raised again in the main thread
shortly after (:data:`REDELIVERY_DELAY_S`, from a helper thread, so that it lands
outside the callback); a command that ends before that is told by
:meth:`DroppedInterrupts.close`.  The one follow-up failure the interruption causes in
distributed's callback (its timer, stopped without having started) is not printed either,
nor is asyncio's "Task exception was never retrieved" for distributed's ``AllExit``: the
sentinel a gather's waiting tasks raise when the gather stops early, as on Ctrl-C
(2 interrupted ``vidsvd run`` in 40 printed two such tracebacks, measured).

:func:`forget_unhandled_interrupt` is for the exit status of an interrupted command.
CPython remembers a ``KeyboardInterrupt`` that left code it ran from a C string
(``PyRun_String``, which some imported extensions use) and, at exit, kills the process
with SIGINT whatever status it exits with: an interrupt during the imports ended 2 or 3
commands in 20 with status -2 instead of 130 (a shell shows both as 130).
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

__all__ = ["REDELIVERY_DELAY_S", "DroppedInterrupts", "forget_unhandled_interrupt", "interrupts_raised_again"]

REDELIVERY_DELAY_S: Final = 0.02
"""Seconds before a dropped interrupt is delivered again: enough for the main thread to
leave the callback that dropped it (which ends before its hook's helper thread runs)."""

_DISTRIBUTED_GC_CALLBACK: Final = "GCDiagnosis._gc_callback"

_GATHER_STOPPED: Final = ("distributed.client", "AllExit")
"""Module and name of the exception a stopped gather leaves in its waiting tasks."""


def _not_a_stopped_gather(record: logging.LogRecord) -> bool:
    """False for asyncio's report of a task that a stopped gather left with ``AllExit``."""
    error = record.exc_info[1] if record.exc_info else None
    if error is None:
        return True
    return (type(error).__module__, type(error).__name__) != _GATHER_STOPPED


class DroppedInterrupts:
    """The ``sys.unraisablehook`` of a command's run; see the module's description."""

    def __init__(self, previous_hook: Any) -> None:
        self._previous_hook = previous_hook
        self._lock = threading.Lock()
        self._pending = False
        self._active = True
        self.dropped = 0
        """How many ``KeyboardInterrupt`` Python dropped in callbacks so far."""

    def hook(self, unraisable: Any) -> None:
        """Take a dropped interrupt (and its follow-up in distributed); pass on the rest."""
        if issubclass(unraisable.exc_type, KeyboardInterrupt):
            with self._lock:
                self.dropped += 1
                self._pending = self._active
            if self._active:
                # no new thread at interpreter shutdown: close() reports the interrupt then
                with contextlib.suppress(RuntimeError):
                    threading.Thread(target=self._deliver, name="vidsvd-interrupt", daemon=True).start()
            return
        if self.dropped and getattr(unraisable.object, "__qualname__", "") == _DISTRIBUTED_GC_CALLBACK:
            return
        self._previous_hook(unraisable)

    def _deliver(self) -> None:
        time.sleep(REDELIVERY_DELAY_S)
        with self._lock:
            if self._pending and self._active:
                self._pending = False
                _thread.interrupt_main()

    def close(self) -> bool:
        """Stop delivering; True when an interrupt was dropped and not yet delivered again."""
        with self._lock:
            self._active = False
            pending, self._pending = self._pending, False
        return pending


@contextmanager
def interrupts_raised_again() -> Iterator[DroppedInterrupts]:
    """Raise again the interrupts dropped in callbacks while the block runs (see the module).

    A stopped gather's leftover tasks are not reported meanwhile.
    """
    previous = sys.unraisablehook
    dropped = DroppedInterrupts(previous)
    sys.unraisablehook = dropped.hook
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.addFilter(_not_a_stopped_gather)
    try:
        yield dropped
    finally:
        dropped.close()
        sys.unraisablehook = previous
        asyncio_log.removeFilter(_not_a_stopped_gather)


def forget_unhandled_interrupt() -> None:
    """Clear CPython's record of an unhandled interrupt, so that the exit status is the one given.

    The record is cleared by any successful run of code from a C string; this runs
    ``pass``.  Call it only once the interrupt has been handled.  Nothing on other
    Python implementations.
    """
    if sys.implementation.name != "cpython":
        return
    import ctypes

    ctypes.pythonapi.PyRun_SimpleString(b"pass")
