"""Importing dask-jobqueue (the ``hpc`` extra) without letting it take Ctrl-C over."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Any

from cluster.errors import InvalidClusterOptionError

if TYPE_CHECKING:
    from cluster.batch_options import BatchSystem

__all__ = ["import_jobqueue", "load_jobqueue"]


def load_jobqueue() -> Any:
    """Import dask_jobqueue without letting it take Ctrl-C over; return the module.

    Importing dask_jobqueue loads its defaults into dask's configuration, and (up to
    at least 0.9) makes SIGINT call ``sys.exit()``: Ctrl-C would end vidsvd with
    exit status 0 and no message.  The handler in place before is put back.

    Raises
    ------
    ImportError
        dask-jobqueue is not installed.
    """
    before = signal.getsignal(signal.SIGINT)
    try:
        import dask_jobqueue
    finally:
        restorable = before is not None and threading.current_thread() is threading.main_thread()
        if restorable and signal.getsignal(signal.SIGINT) is not before:
            signal.signal(signal.SIGINT, before)
    return dask_jobqueue


def import_jobqueue(system: BatchSystem) -> Any:
    """dask_jobqueue, or a one-line error naming the ``hpc`` extra."""
    try:
        return load_jobqueue()
    except ImportError:
        raise InvalidClusterOptionError(
            f"--cluster {system.name} needs dask-jobqueue: pip install 'vidsvd[hpc]'"
        ) from None
