"""Ctrl-C noted while a block runs, raised by the block's own code where it is safe.

Python raises ``KeyboardInterrupt`` in the main thread at whatever bytecode it runs
next.  Inside a library's synchronisation code that can leave things half done: in
``distributed.utils.sync`` before the coroutine it waits for has started, the
coroutine is not cancelled and tornado prints a ``NameError`` traceback; inside a
queue's lock handling, a thread can be left waiting forever.  Within
:class:`CtrlCAtBoundaries`, SIGINT only sets a flag, and the block raises it at
points of its choosing (:meth:`CtrlCAtBoundaries.raise_if_pressed`); leaving the block
raises it in any case.  The block must therefore wait in short slices, so that a
pressed Ctrl-C is acted on within one slice.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

__all__ = ["CtrlCAtBoundaries"]


class CtrlCAtBoundaries:
    """Turn Ctrl-C into a KeyboardInterrupt raised at the block's boundaries (main thread only).

    Leaving the block raises the interrupt whatever else went wrong: an error caused
    by the same signal (a subprocess that ended on it, a broken pipe) is the
    interrupt, not a fault.  Outside the main thread signals cannot be handled, and
    the block runs as is.  Blocks nest: the inner one notes the press and raises it.
    """

    def __init__(self) -> None:
        self.pressed = False
        self._previous: object = None
        self._installed = False

    def __enter__(self) -> CtrlCAtBoundaries:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._note)
            self._installed = True
        return self

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.pressed = True

    def raise_if_pressed(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C was pressed since the block began."""
        if self.pressed:
            raise KeyboardInterrupt

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
        if self.pressed and not isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt from None
