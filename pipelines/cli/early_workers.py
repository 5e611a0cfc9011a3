"""Start the embedded workers while a command imports dask, when it is about to compute."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.steps.context import JobContext

__all__ = ["early_workers"]


@contextlib.contextmanager
def early_workers(
    job: JobContext, store: str, *, writing_step: str | None, wanted: bool = True
) -> Iterator[None]:
    """While the block runs, the embedded workers start in a thread (:meth:`JobContext.warm_up`).

    A command enters this before it imports its step, so that the worker processes
    start and import their modules (about a second) while this process imports
    dask, xarray and zarr (about half a second), not after.  Nothing starts unless
    ``wanted`` and the store can be read (:func:`storage.store.store_problem`, which
    imports no dask): then the step reports what is wrong, or reuses what is
    stored, without a cluster, as it would without this.

    Parameters
    ----------
    job : JobContext
        The command's context; an existing scheduler or a batch cluster starts
        nothing early (see :meth:`JobContext.warm_up`).
    store : str
        The store the step uses.
    writing_step : str or None
        The step writes the store: its writer lock is taken first and held through
        the block, so a busy or read-only store is refused before any worker starts
        (the step takes the lock again; it is re-entrant within a process).
    wanted : bool
        False: start nothing (the command knows it will not compute).
    """
    from storage.store import store_problem  # zarr, not dask: not for --help, but cheap here
    from storage.writer_lock import writer_lock

    if not wanted or store_problem(store) is not None:
        yield
        return
    held = writer_lock(store, step=writing_step) if writing_step is not None else contextlib.nullcontext()
    with held:
        job.warm_up()
        yield
