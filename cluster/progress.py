"""Compute dask collections on a cluster with a progress bar on stderr.

The bar counts *tasks* of the whole graph (or, when the caller gives a frame count,
that many frames times the share of the tasks done), not output chunks: the scheduler's own
``Progress`` plugin (what ``distributed.progress`` uses) reports how many of the
tasks the outputs depend on are done, and a tqdm bar on stderr shows that count,
the rate and the remaining time.  Task errors reach the caller with their original
type; Ctrl-C cancels the futures on the cluster before it propagates.

A wait can also be given a bound on how long the cluster may have no worker at all:
a batch job killed by its system, or workers that cannot unpickle the tasks, leave the
scheduler with work and nobody to do it, and dask waits for workers forever.  The
scheduler is asked for its worker count every :data:`WORKER_CHECK_S` seconds (one
small message, whatever the cluster's size); past the bound the futures are cancelled
and :class:`cluster.errors.WorkersLostError` says so.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import distributed
from distributed.diagnostics.progressbar import ProgressBar
from tqdm import tqdm

from cluster.client import worker_count
from cluster.errors import TaskKillsWorkersError, WorkersLostError

__all__ = ["WORKER_CHECK_S", "compute_with_progress", "wait_with_progress"]

logger = logging.getLogger(__name__)

#: How often the main thread redraws the bar; it wakes at once when a future finishes.
_POLL_S = 0.1
#: How long to wait, once everything is done, for a first task count if none came yet.
_FINAL_COUNT_WAIT_S = 1.0
#: How often to look for it: the scheduler sends one as soon as its progress feed is set up.
_FINAL_COUNT_POLL_S = 0.005
#: How often a wait with a bound on worker loss asks the scheduler for its worker count.
WORKER_CHECK_S = 2.0
#: A bar opened on work already done: no rate.
_NO_RATE_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}]"


class _TaskCounter(ProgressBar):  # type: ignore[misc]
    """Receives (all, remaining) task counts from the scheduler, on the client's loop.

    Nothing here draws: the main thread reads :attr:`counts` and owns the tqdm bar,
    so the bar is never touched from two threads.
    """

    def __init__(self, futures: Sequence[distributed.Future[Any]], client: distributed.Client):
        super().__init__(futures, scheduler=client.scheduler.address, interval="200ms")
        self.counts: tuple[int, int] | None = None  # (all tasks, remaining tasks)
        self.ended = False
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def _draw_bar(self, remaining: int, all: int, **kwargs: Any) -> None:
        self.counts = (int(all), int(remaining))  # one atomic assignment

    async def run(self) -> None:
        """Listen until the scheduler reports the end, :meth:`stop`, or a failure."""
        if self._stopped:
            self.ended = True
            return
        self._task = asyncio.current_task()
        try:
            await self.listen()
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # progress is best effort: never fail the computation
            logger.debug("task progress unavailable: %r", exc)
        finally:
            comm = getattr(self, "comm", None)
            if comm is not None and not comm.closed():
                comm.abort()
            self.ended = True

    def stop(self) -> None:
        """Stop listening; call on the client's event loop."""
        self._stopped = True
        if self._task is not None and not self._task.done():
            self._task.cancel()


def _settled(futures: Sequence[distributed.Future[Any]]) -> bool:
    """True when every future is done, or one has failed (no point waiting further)."""
    return all(f.done() for f in futures) or any(f.status == "error" for f in futures)


def _update(
    bar: tqdm | None,
    counter: _TaskCounter | None,
    futures: Sequence[distributed.Future[Any]],
    *,
    description: str,
    frames: int | None = None,
) -> tqdm | None:
    """Bring the bar to the latest count; open it once a total is known (never ``0task ?``)."""
    counts = counter.counts if counter is not None else None
    if counts is not None:
        total, done = counts[0], counts[0] - counts[1]
    elif counter is None or counter.ended:  # no task counts: count outputs instead
        total, done = len(futures), sum(f.done() for f in futures)
    else:  # the first count has not arrived yet
        return bar
    if frames is not None:  # the share of the tasks done, in frames
        total, done = frames, frames * done // max(total, 1)
    if bar is None:
        bar = _open_bar(description, total, frames=frames, done_already=done >= total)
    if bar.total != total:
        bar.total = total
        bar.refresh()
    if done > bar.n:
        bar.update(done - bar.n)
    return bar


def _open_bar(description: str, total: int, *, frames: int | None, done_already: bool = False) -> tqdm:
    """A bar on stderr; one opened on work already done shows no rate (its clock starts now)."""
    unit = "task" if frames is None else "frame"
    # tqdm would divide by the microseconds since it opened: "4455631 frame/s"
    bar_format = _NO_RATE_FORMAT if done_already else None
    return tqdm(
        total=total, desc=description, unit=unit, file=sys.stderr, dynamic_ncols=True, bar_format=bar_format
    )


def wait_with_progress(
    client: distributed.Client,
    futures: Iterable[distributed.Future[Any]],
    *,
    description: str,
    show: bool = True,
    frames: int | None = None,
    workerless_timeout_s: float | None = None,
) -> list[distributed.Future[Any]]:
    """Wait until futures are done, drawing a bar of done/total tasks on stderr.

    Parameters
    ----------
    client : distributed.Client
        The client the futures belong to.
    futures : iterable of distributed.Future
        What to wait for; the bar counts every task they depend on.
    description : str
        Label at the left of the bar.
    show : bool
        ``False`` draws nothing at all.
    frames : int, optional
        Count in frames instead: the bar shows ``frames`` times the share of the tasks
        done (for graphs whose tasks each handle a like share of the frames).
    workerless_timeout_s : float, optional
        Give up when the scheduler has had no worker for this many seconds while
        the futures are pending (checked every :data:`WORKER_CHECK_S` seconds);
        None waits for workers forever, as dask does.

    Returns
    -------
    list of distributed.Future
        The futures, all finished.

    Raises
    ------
    Exception
        The exception of the first failed future, with its original type, except:
    TaskKillsWorkersError
        For dask's ``KilledWorker``: a task whose every worker died running it.
    WorkersLostError
        No worker for ``workerless_timeout_s`` seconds; the futures are cancelled.
    KeyboardInterrupt
        After cancelling the futures on the cluster.

    Notes
    -----
    Memory: the futures' results stay on the workers; nothing is gathered here.
    """
    futures = list(futures)
    bar: tqdm | None = None
    counter: _TaskCounter | None = None
    try:
        if show and futures:
            counter = _TaskCounter(futures, client)
            client.loop.add_callback(counter.run)
        # woken as each future finishes: sleeping a poll interval made every wait
        # 0.05-0.1 s longer than its work (a `run` waits about ten times, measured)
        finished = threading.Event()
        for future in futures:
            future.add_done_callback(lambda _: finished.set())
        watch = None if workerless_timeout_s is None else _WorkerWatch(client, workerless_timeout_s)
        while not _settled(futures):
            finished.wait(_POLL_S)
            finished.clear()  # a future finishing from here on sets it again
            if watch is not None and not _settled(futures):
                watch.check()
            if show:
                bar = _update(bar, counter, futures, description=description, frames=frames)
        if show and not any(f.status == "error" for f in futures):
            # the bar's total is the count of tasks: wait for it only if none came yet (the
            # scheduler reports every 200 ms; a later count would only say none remain)
            deadline = time.monotonic() + _FINAL_COUNT_WAIT_S
            while counter is not None and not counter.ended and time.monotonic() < deadline:
                if counter.counts is not None:
                    break
                time.sleep(_FINAL_COUNT_POLL_S)
            bar = _update(bar, counter, futures, description=description, frames=frames)
            if bar is None:
                bar = _open_bar(description, frames or len(futures), frames=frames, done_already=True)
            bar.update(bar.total - bar.n)
    except BaseException:  # KeyboardInterrupt above all: free the cluster, then propagate
        client.cancel(futures)
        raise
    finally:
        if counter is not None:
            client.loop.add_callback(counter.stop)
        if bar is not None:
            bar.close()
    for future in futures:
        if future.status == "error":
            try:
                future.result()  # raises the task's exception with its original type
            except distributed.KilledWorker as killed:
                raise _killed_workers(killed) from killed
    return futures


def _killed_workers(killed: distributed.KilledWorker) -> TaskKillsWorkersError:
    """The KilledWorker of dask as one line that says what to try."""
    address = getattr(killed.last_worker, "address", killed.last_worker)
    return TaskKillsWorkersError(
        f"a task ({killed.task!r}) was run on {killed.allowed_failures + 1} dask workers and each"
        f" died while running it (the last, {address}); a worker dies when it outgrows its memory"
        " limit or its process crashes: see the workers' logs, and give each worker more memory"
        " (--memory-limit or fewer --threads-per-worker; --job-memory for batch jobs), or ingest"
        " with fewer --chunk-frames"
    )


class _WorkerWatch:
    """Raises once the scheduler has had no worker for longer than the bound."""

    def __init__(self, client: distributed.Client, timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._next_check = time.monotonic() + WORKER_CHECK_S
        self._without_since: float | None = None

    def check(self) -> None:
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + WORKER_CHECK_S
        try:
            count = worker_count(self._client)
        except Exception as error:  # a lost scheduler is reported by the futures, as before
            logger.debug("worker count unavailable: %r", error)
            return
        if count > 0:
            self._without_since = None
            return
        if self._without_since is None:
            self._without_since = now
        elif now - self._without_since >= self._timeout_s:
            address = self._client.scheduler.address if self._client.scheduler is not None else "?"
            raise WorkersLostError(
                f"every dask worker left the scheduler at {address} and none came back within"
                f" {self._timeout_s:g} s, so the computation was cancelled; see the workers' logs"
                " (a worker that cannot import the same vidsvd as this machine stops at its first"
                " task, and a batch job may have been killed by its system)"
            )


def compute_with_progress(
    client: distributed.Client,
    *collections: Any,
    description: str,
    show: bool = True,
) -> list[Any]:
    """Compute dask collections on the cluster and return their results, with a bar.

    Parameters
    ----------
    client : distributed.Client
        Where to compute (see :func:`cluster.client.connect`).
    *collections
        Dask collections (arrays, dataframes, delayed), lazy or persisted; any other
        object is returned as is.
    description : str
        Label at the left of the bar, like ``"svd"``.
    show : bool
        ``False`` draws nothing at all.

    Returns
    -------
    list
        One result per collection, in order.

    Raises
    ------
    Exception
        A failed task's exception, with its original type; the other futures are
        cancelled.
    KeyboardInterrupt
        After cancelling the computation on the cluster.

    Notes
    -----
    Memory: every result is gathered into this process, so the results together must
    fit in its memory; the intermediate tasks live and die on the workers.  To keep a
    large result on the cluster, ``client.persist`` it and use :func:`wait_with_progress`.
    """
    computed = client.compute(list(collections))
    futures = [c for c in computed if isinstance(c, distributed.Future)]
    try:
        wait_with_progress(client, futures, description=description, show=show)
        return list(client.gather(computed))
    except BaseException:
        client.cancel(futures)
        raise
