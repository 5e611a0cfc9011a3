"""The one place that creates a dask.distributed Client: embedded, existing or batch cluster.

:func:`connect` either starts an embedded :class:`distributed.LocalCluster` on this
machine, bound to the loopback interface only (no other machine can reach its
scheduler, workers or dashboard), or connects to a scheduler someone already runs,
over plain TCP or mutually authenticated TLS, or starts a scheduler here whose
workers run in batch jobs (SLURM, PBS: see :mod:`cluster.batch`; that scheduler
listens on the network interface the compute nodes reach).  Every way yields a
:class:`distributed.Client` that is the default scheduler of dask while the context
is open, and closes everything it opened when it exits, also on Ctrl-C: batch jobs
are cancelled.

Option names map to command-line flags by replacing ``_`` with ``-``
(``n_workers`` is ``--workers``); error messages use the flag spelling.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, Final

import dask.config
import dask.system
import dask.utils
import distributed
import distributed.system

from cluster.batch import start_batch_cluster, wait_for_first_worker
from cluster.ctrl_c import CtrlCAtBoundaries
from cluster.embedded import LOOPBACK, plan_embedded, sigint_blocked, single_threaded_blas, start_embedded
from cluster.errors import (
    NoWorkersError,
)
from cluster.existing import connect_existing
from cluster.options import ClusterOptions

__all__ = [
    "GRAPH_CONFIG",
    "connect",
    "dashboard_link",
    "describe",
    "peak_worker_memory",
    "scheduler_workers",
    "worker_count",
    "worker_memory_limit",
]

#: Clients of embedded clusters started without the dashboard (their scheduler still
#: serves HTTP for health checks, so its services alone cannot tell).
_WITHOUT_DASHBOARD: weakref.WeakSet[distributed.Client] = weakref.WeakSet()


GRAPH_CONFIG: Final = {
    "array.rechunk.method": "tasks",
    "distributed.admin.large-graph-warning-threshold": "1GiB",
}
"""dask's configuration while a Client of :func:`connect` is open.

- Rechunks as tasks, never through distributed's P2P extension: vidsvd's rechunks
  regroup samples of frames and factor columns, which tasks do well, and the
  extension logs every shuffle it starts and ends at WARNING level (at 3840x2160,
  two pairs of lines in ``vidsvd run --quiet``).
- Graphs may carry per-pixel maps without a warning.  A threshold map of 3840x2160 is
  33 MB of float32, over distributed's 10 MB threshold; it travels in the graph on
  purpose, so that the scheduler can recompute what a lost worker held (a scattered
  array has no lineage).  A graph past 1 GiB is still a mistake worth the warning.
"""


@contextmanager
def connect(options: ClusterOptions, *, import_on_start: Sequence[str] = ()) -> Iterator[distributed.Client]:
    """Open a Client on an embedded, existing or batch cluster; close all on exit.

    Without ``options.scheduler`` this starts a :class:`distributed.LocalCluster`
    sized by :func:`plan_embedded` (one worker in this process, or worker processes),
    whose scheduler, workers and dashboard listen on 127.0.0.1 only, with
    distributed's log output limited to warnings.  With a scheduler address it
    connects to it, over TLS when the address is ``tls://``, waiting at most
    ``options.connect_timeout_s``.  With ``options.batch`` it starts a scheduler on
    the batch interface, submits the worker jobs and waits until the first worker
    joins, at most the batch start timeout.

    The client is dask's default scheduler inside the ``with`` block.  On exit, also
    through an exception or Ctrl-C, the client and any embedded or batch cluster are
    closed (batch jobs are cancelled); an existing scheduler and its workers keep
    running.

    Parameters
    ----------
    options : ClusterOptions
        Where to run; validated here.
    import_on_start : sequence of str
        Modules the embedded cluster's workers import as they start (see
        :func:`cluster.embedded.start_embedded`); other clusters' workers are theirs.

    Yields
    ------
    distributed.Client

    Raises
    ------
    InvalidClusterOptionError, TLSConfigurationError
        See :meth:`ClusterOptions.validate`; also a TLS handshake the scheduler
        rejects, or PEM files Python cannot load.
    SchedulerUnreachableError
        Nothing answered at the address within the timeout.
    BatchSubmitError
        The batch system refused a worker job.
    NoWorkersError
        No worker of the batch jobs joined within the start timeout.

    Notes
    -----
    Ctrl-C in a terminal sends SIGINT to every process of the foreground process
    group, the embedded workers included.  They are started with SIGINT blocked (see
    :func:`sigint_blocked`), so the interrupt reaches only this process, which
    cancels the work and closes the cluster: workers dying of their own
    KeyboardInterrupt would print tracebacks and make the scheduler log lost tasks.

    Memory: the embedded workers together may use the machine's memory minus the
    headroom of :func:`plan_embedded`; this process holds the client and the scheduler
    (tens of MB plus the results it gathers), and the worker when it runs in process.
    """
    options.validate()
    with ExitStack() as opened:  # closes in reverse order: the client, then any cluster
        opened.enter_context(dask.config.set(GRAPH_CONFIG))
        if options.scheduler is not None:
            client = connect_existing(options)
            opened.callback(client.close)
        elif options.batch is not None:
            # Ctrl-C while the jobs are submitted and awaited is raised between dask's
            # calls, once what was started is registered for closing (cluster.ctrl_c)
            with CtrlCAtBoundaries() as ctrl_c:
                cluster = start_batch_cluster(options.batch, dashboard=options.dashboard)
                opened.callback(cluster.close)
                ctrl_c.raise_if_pressed()
                client = _client_of(cluster, opened, dashboard=options.dashboard)
                wait_for_first_worker(client, options.batch, ctrl_c=ctrl_c)
        else:
            plan = plan_embedded(options)
            if plan.in_process:
                opened.enter_context(single_threaded_blas())
            with sigint_blocked():
                cluster = start_embedded(plan, options, import_on_start=import_on_start)
                opened.callback(cluster.close)
            # a Ctrl-C pressed while the cluster started is raised on leaving the
            # block above, once the cluster is registered for closing
            client = _client_of(cluster, opened, dashboard=options.dashboard)
        yield client


def _client_of(cluster: Any, opened: ExitStack, *, dashboard: bool) -> distributed.Client:
    """A Client of ``cluster``, registered in ``opened`` for closing."""
    client = distributed.Client(cluster)
    opened.callback(client.close)
    if not dashboard:
        _WITHOUT_DASHBOARD.add(client)
    return client


def _scheduler_info(client: distributed.Client, *, n_workers: int = -1) -> dict[str, Any]:
    """The scheduler's identity with ``n_workers`` of its workers (-1: all), asked for now.

    Not ``Client.scheduler_info``: that returns the Client's cached identity, which the
    Client's own periodic update (every 2 s, without the workers since distributed
    2025) may replace between the fetch and the return: a test once read 0 workers
    that way, just after waiting for 3.
    """
    try:
        info = client.sync(client.scheduler.identity, n_workers=n_workers)
    except TypeError:  # distributed before n_workers was a parameter reports all workers
        info = client.sync(client.scheduler.identity)
    return dict(info)


def _address(client: distributed.Client) -> str:
    scheduler = client.scheduler
    return str(scheduler.address) if scheduler is not None else "(closed client)"


def worker_count(client: distributed.Client) -> int:
    """How many workers the scheduler has now (one small call, whatever the cluster's size)."""
    info = _scheduler_info(client, n_workers=0)
    count = info.get("n_workers")
    return int(count) if count is not None else len(info.get("workers", {}))


def scheduler_workers(client: distributed.Client) -> dict[str, dict[str, Any]]:
    """Every worker the scheduler knows now, by address: its threads, memory limit, metrics."""
    return dict(_scheduler_info(client).get("workers", {}))


def describe(client: distributed.Client) -> str:
    """One line about the cluster: scheduler address, workers, threads, total memory.

    Example: ``dask scheduler tcp://127.0.0.1:40331: 2 workers, 4 threads, 14.00 GiB
    memory``; an embedded worker in this process is ``dask scheduler in this process:
    1 worker in this process``.
    Workers without a memory limit make the total ``unlimited``.
    """
    workers = scheduler_workers(client).values()
    threads = sum(int(w.get("nthreads", 0)) for w in workers)
    limits = [int(w.get("memory_limit") or 0) for w in workers]
    unlimited = any(limit <= 0 for limit in limits)
    memory = "unlimited" if unlimited else dask.utils.format_bytes(sum(limits))
    n = len(limits)
    here = " in this process" if getattr(client.cluster, "processes", True) is False else ""
    address = _address(client)
    # an in-process scheduler's inproc:// address names no place a user could reach
    where = "in this process" if address.startswith("inproc://") else address
    return (
        f"dask scheduler {where}: {n} worker{'s' if n != 1 else ''}{here},"
        f" {threads} thread{'s' if threads != 1 else ''}, {memory} memory"
    )


def dashboard_link(client: distributed.Client) -> str | None:
    """The URL of the scheduler's dashboard, or None when it serves none.

    The URL uses the host of the scheduler's address as this client sees it (loopback
    for a scheduler in this process, whose address names no host).  The
    dashboard's pages need bokeh on the scheduler's machine; without it the URL shows
    a page that says so.
    """
    if client in _WITHOUT_DASHBOARD:
        return None
    services = _scheduler_info(client).get("services", {})
    if "dashboard" not in services:
        return None
    if _address(client).startswith("inproc://"):
        # an in-process scheduler's address names no reachable host; the embedded
        # cluster serves its dashboard on loopback (cluster.embedded)
        return f"http://{LOOPBACK}:{int(services['dashboard'])}/status"
    link = client.dashboard_link
    return str(link) if link else None


def worker_memory_limit(client: distributed.Client) -> int:
    """The smallest memory limit of the cluster's workers, in bytes.

    A task graph whose largest task needs more than this cannot run anywhere on the
    cluster.  A worker without a limit counts with its host's memory (as dask reads
    it: physical memory, cgroup and rlimit caps), queried on that worker.

    Raises
    ------
    NoWorkersError
        The scheduler has no workers yet.
    """
    workers = scheduler_workers(client)
    if not workers:
        raise _no_workers(client)
    limits = {addr: int(w.get("memory_limit") or 0) for addr, w in workers.items()}
    unlimited = [addr for addr, limit in limits.items() if limit <= 0]
    if unlimited:
        host_memory = client.run(distributed.system.memory_limit, workers=unlimited)
        limits.update({addr: int(value) for addr, value in host_memory.items()})
    return min(limit for limit in limits.values() if limit > 0)


def peak_worker_memory(client: distributed.Client) -> int | None:
    """Best effort: the largest worker process memory the scheduler knows, in bytes.

    This is the maximum over workers of the resident set size (RSS) of each worker
    process, as the worker sampled it for its last heartbeat to the scheduler.  It is
    a recent sample, not a high-water mark: a spike between heartbeats (every 0.5 s on
    small clusters, longer on large ones) goes unseen, and memory freed since is not
    counted.  It includes unmanaged memory (libraries, fragmentation) but not the
    nanny processes nor this client process.

    Returns
    -------
    int or None
        None when there are no workers or none has reported its memory yet.
    """
    samples = [w.get("metrics", {}).get("memory") for w in scheduler_workers(client).values()]
    values = [int(v) for v in samples if isinstance(v, int | float) and not isinstance(v, bool)]
    return max(values) if values else None


def _no_workers(client: distributed.Client) -> NoWorkersError:
    address = _address(client)
    return NoWorkersError(
        f"the dask scheduler at {address} has no workers; start some with `dask worker {address}` and retry"
    )
