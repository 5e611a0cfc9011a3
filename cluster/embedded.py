"""The embedded cluster: a LocalCluster on 127.0.0.1, sized to the machine.

:func:`plan_embedded` is a pure planner (cores and memory in, workers, threads,
memory limit and whether the one worker runs in this process out); :func:`start_embedded`
starts the cluster it plans, with SIGINT blocked in the workers so that Ctrl-C
reaches only the command, and :func:`single_threaded_blas` keeps an in-process
worker's BLAS to one thread per task, as distributed does for worker processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import resource_tracker

import dask.config
import dask.system
import dask.utils
import distributed
import distributed.system
import threadpoolctl
from distributed.core import Status

from cluster.errors import (
    InvalidClusterOptionError,
)
from cluster.options import ClusterOptions

__all__ = [
    "LOOPBACK",
    "MAX_THREADS_PER_WORKER",
    "WORKER_MALLOC_ENVIRONMENT",
    "EmbeddedPlan",
    "plan_embedded",
    "sigint_blocked",
    "single_threaded_blas",
    "start_embedded",
]

MAX_THREADS_PER_WORKER = 8
"""Threads of one embedded worker process when the cores are not given: more cores, more workers."""

WORKER_MALLOC_ENVIRONMENT: dict[str, str] = {"MALLOC_TOP_PAD_": str(64 << 20)}
"""glibc malloc settings added to distributed's for the embedded workers' processes.

distributed's nannies start workers with ``MALLOC_TRIM_THRESHOLD_=65536`` so that
freed memory goes back to the OS at once.  Under that setting alone, each array
larger than 128 KB is a fresh mapping whose pages are faulted in and zeroed on first
touch: reading a chunk of 720p from the store (36 frames, 33 MB) made 9,100 page
faults and took 73-92 ms in place of 27 ms (measured in a plain process with the
same variable), and every pass over M reads every chunk.  With a top pad of 64 MiB
glibc keeps that much free memory at the top of a heap when it trims, and the same
read made 1 page fault and took 30 ms.  The cost is at most 64 MiB of resident
memory per heap beyond distributed's default.  Workers of a cluster given by address
keep their own settings.
"""

#: Memory left out of the workers' limits for the client process and the OS: this share
#: of the machine's memory, at least :data:`_MIN_HEADROOM_BYTES`, at most a quarter.
_HEADROOM_FRACTION = 0.10
_MIN_HEADROOM_BYTES = 1 << 30
LOOPBACK = "127.0.0.1"
"""Where the embedded cluster listens: loopback only, never a public interface."""


@dataclass(frozen=True, kw_only=True)
class EmbeddedPlan:
    """The size of an embedded cluster, as :func:`plan_embedded` chose it.

    Attributes
    ----------
    n_workers : int
        Workers.
    threads_per_worker : int
        Threads of each worker.
    memory_limit : int
        Memory limit of each worker in bytes.
    in_process : bool
        The one worker runs in this process, beside the scheduler and the client;
        otherwise each worker is a process of its own, under a nanny.
    """

    n_workers: int
    threads_per_worker: int
    memory_limit: int
    in_process: bool = False


def plan_embedded(
    options: ClusterOptions,
    *,
    cores: int | None = None,
    memory_bytes: int | None = None,
) -> EmbeddedPlan:
    """Size the embedded cluster: fill the gaps the options leave from the machine's size.

    With neither count given, one worker takes up to :data:`MAX_THREADS_PER_WORKER`
    cores as threads, and more cores get more worker processes of equal threads (see
    :func:`_split_cores` for why not dask's one process per core).  A single worker
    planned so runs in this process (see :func:`_in_process`).  With a count given,
    the other divides the cores by it, and every worker is a process of its own.
    Without a memory limit, each worker gets ``(memory - headroom) / n_workers``,
    where the headroom left to this process and the OS is 10% of the memory, at least
    1 GiB, at most a quarter.

    Parameters
    ----------
    options : ClusterOptions
        Validated options without a scheduler address.
    cores, memory_bytes : int, optional
        The machine's size; default to what dask detects, honouring CPU affinity,
        cgroup quotas and memory limits (containers, batch jobs).

    Raises
    ------
    InvalidClusterOptionError
        The given per-worker memory limit times the workers exceeds the machine's memory.
    """
    cores = dask.system.cpu_count() if cores is None else cores
    total = distributed.system.memory_limit() if memory_bytes is None else memory_bytes
    n_workers, threads = options.n_workers, options.threads_per_worker
    if n_workers is None and threads is None:
        n_workers, threads = _split_cores(cores)
    elif n_workers is None:
        assert threads is not None
        n_workers = max(1, cores // threads)
    elif threads is None:
        threads = max(1, cores // n_workers)
    limit = options.memory_limit_bytes
    if limit is None:
        headroom = min(max(int(total * _HEADROOM_FRACTION), _MIN_HEADROOM_BYTES), total // 4)
        limit = max(1, (total - headroom) // n_workers)
    elif limit * n_workers > total:
        raise InvalidClusterOptionError(
            f"--memory-limit {dask.utils.format_bytes(limit)} x {n_workers} workers exceeds"
            f" this machine's {dask.utils.format_bytes(total)}; lower --memory-limit or"
            " --workers"
        )
    return EmbeddedPlan(
        n_workers=n_workers,
        threads_per_worker=threads,
        memory_limit=limit,
        in_process=_in_process(options, n_workers=n_workers),
    )


def _in_process(options: ClusterOptions, *, n_workers: int) -> bool:
    """True when the one worker of an unsized cluster should run in this process.

    vidsvd's tasks are zstd, numpy casts and BLAS, which release the GIL, the case
    for which dask advises ``processes=False``.  A worker process costs its start and
    its imports, paid by every command, and every result gathered is serialised
    through a socket; small jobs are dominated by both (README, "Embedded": the
    notebook's decompose a third faster in process, large ones the same).  Workers
    the user counts (``--workers``, ``--threads-per-worker``) stay processes, each
    under a nanny that restarts it if it dies or outgrows its memory limit.
    """
    return options.n_workers is None and options.threads_per_worker is None and n_workers == 1


def _split_cores(cores: int) -> tuple[int, int]:
    """Workers and threads for ``cores`` cores: ``ceil(cores / MAX_THREADS_PER_WORKER)`` workers.

    dask's LocalCluster splits up to 4 cores into single-threaded processes, which
    suits Python-heavy tasks.  vidsvd's passes are zstd, numpy casts and BLAS, which
    release the GIL, and their partial sums are (P, l) arrays of 184 MB at 720p that
    a sum task on another process must first receive: with two single-threaded
    workers a 12,000-frame 720p decompose peaked at 3.7 GiB, with partials and sums
    waiting on the worker that did not hold their sibling, and with one two-threaded
    worker at 2.9 GiB in the same time (README, decompose).  The counting kernel of
    the background models (``np.bincount``) holds the GIL; the cap on threads per
    process bounds that contention on large machines (8 is a round bound, not a
    measured optimum: only two cores were measured).
    """
    cores = max(1, cores)
    workers = math.ceil(cores / MAX_THREADS_PER_WORKER)
    return workers, cores // workers


@contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT in the calling thread for the block, then deliver any that came.

    Threads and processes inherit the signal mask of the thread that creates them, and
    a process keeps it across ``exec``: the embedded cluster's event-loop thread,
    created inside the block, and the worker processes it spawns, also later when a
    nanny restarts one, never receive SIGINT.  Python does not unblock it when a
    process starts.  No-op where ``pthread_sigmask`` does not exist (Windows).

    multiprocessing's resource tracker, when it starts its process, blocks SIGINT
    and then *unblocks* it in the calling thread, which would undo the block in the
    cluster's event-loop thread (the nannies create their queues there); it is
    started first, so that it does not start inside the block.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS and OpenMP pools of this process limited to one thread for the block.

    distributed starts worker processes with ``OMP_NUM_THREADS=1`` and the like, so
    that each task's BLAS call takes one core and the worker's threads take the
    others.  A worker in this process (:attr:`EmbeddedPlan.in_process`) gets the same
    through threadpoolctl: OpenBLAS's own threads beside the worker's oversubscribe
    the cores (``run`` was about 10 % slower without the limit).  Kernels that split
    their own work into threads (the SVD's orthonormalisation) still use every core.
    """
    with threadpoolctl.threadpool_limits(limits=1):
        yield


def start_embedded(
    plan: EmbeddedPlan, options: ClusterOptions, *, import_on_start: Sequence[str] = ()
) -> distributed.LocalCluster:
    """Start the LocalCluster of ``plan`` (from :func:`plan_embedded`), listening on 127.0.0.1 only.

    Its workers are processes unless the plan runs its one worker in this process;
    the caller then limits BLAS to a thread per task (:func:`single_threaded_blas`).

    ``import_on_start``: modules each worker imports as it starts, before it takes a
    task, so that the first tasks do not pay for them (dask.array, zarr and vidsvd's
    kernels: about 0.9 s per worker process).  A module that fails to import is left
    to the task that needs it, which reports the error.
    """
    # read by each nanny when it is made, and used again when it restarts its worker
    environ = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    for handler in logging.getLogger("distributed").handlers:
        if _not_cancelled not in handler.filters:
            handler.addFilter(_not_cancelled)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {**environ, **WORKER_MALLOC_ENVIRONMENT}}):
        return _local_cluster(plan, options, import_on_start=tuple(import_on_start))


def _not_cancelled(record: logging.LogRecord) -> bool:
    """False for the scheduler's log of a coroutine cancelled as the cluster closes.

    On Ctrl-C the in-process scheduler closes while the progress plugin's setup may
    still be waiting for its keys; distributed logs the ``CancelledError`` with its
    traceback at ERROR level (seen once in four interrupted runs), under vidsvd's
    one-line message.  Nothing failed: the command was interrupted.
    """
    return not (record.exc_info is not None and isinstance(record.exc_info[1], asyncio.CancelledError))


def _local_cluster(
    plan: EmbeddedPlan, options: ClusterOptions, *, import_on_start: tuple[str, ...]
) -> distributed.LocalCluster:
    plugins: tuple[distributed.WorkerPlugin, ...] = (_QuietShutdown(),)
    if import_on_start:
        plugins += (_ImportOnStart(import_on_start),)
    return distributed.LocalCluster(
        n_workers=plan.n_workers,
        threads_per_worker=plan.threads_per_worker,
        memory_limit=plan.memory_limit,
        processes=not plan.in_process,
        host=None if plan.in_process else LOOPBACK,  # inproc addresses name no host
        scheduler_port=0,
        # distributed always serves HTTP (health checks, metrics); keep it on loopback
        # and a free port even without the dashboard, whose pages are then left out.
        dashboard_address=f"{LOOPBACK}:0",
        scheduler_kwargs={"dashboard": options.dashboard},
        # likewise each worker's HTTP server (health, metrics; no dashboard pages): an
        # in-process worker names no host, and would otherwise listen on every interface
        worker_dashboard_address=f"{LOOPBACK}:0",
        # in process, results reach the caller by reference: no socket, no serialisation
        # (the video's chunks are read-only for that reason: storage.integrity)
        protocol="inproc" if plan.in_process else "tcp",
        silence_logs=logging.WARNING,
        local_directory=options.local_directory,
        plugins=plugins,
    )


class _ImportOnStart(distributed.WorkerPlugin):  # type: ignore[misc]
    """A worker imports these modules while it starts, before its first task."""

    name = "vidsvd-import-on-start"

    def __init__(self, modules: tuple[str, ...]) -> None:
        self.modules = modules

    def setup(self, worker: distributed.Worker) -> None:
        for module in self.modules:
            with contextlib.suppress(Exception):  # the task that needs it reports the failure
                importlib.import_module(module)


class _QuietShutdown(distributed.WorkerPlugin):  # type: ignore[misc]
    """Embedded workers log nothing about their own shutdown.

    Closing the cluster while a task runs (Ctrl-C, or an error elsewhere) makes a
    worker log, on the user's terminal under vidsvd's one-line message, ``WARNING -
    Async instruction for <Task cancelled ...> ended with CancelledError`` and, when a
    heartbeat was on its way as the scheduler closed, ``ERROR - Failed to communicate
    with scheduler during heartbeat`` with a traceback.  Records of the worker's
    loggers are dropped while the worker is closing; before that they all show.

    A task that raises is not logged either (distributed's ``Compute Failed`` record,
    with the task's traceback): the exception reaches the client, which reports it,
    as one line for a user's mistake (a damaged store, a missing file) or with its
    traceback for a bug, so the worker's copy only repeats it under the one line.
    """

    name = "vidsvd-quiet-shutdown"

    def setup(self, worker: distributed.Worker) -> None:
        def running(record: logging.LogRecord) -> bool:
            if isinstance(record.msg, str) and record.msg.startswith("Compute Failed"):
                return False
            return worker.status not in _SHUTTING_DOWN

        for name in ("distributed.worker", "distributed.worker.state_machine"):
            logging.getLogger(name).addFilter(running)


_SHUTTING_DOWN = frozenset({Status.closing, Status.closing_gracefully, Status.closed})
