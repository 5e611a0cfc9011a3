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

import logging
import os
import re
import signal
import ssl
import weakref
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from multiprocessing import resource_tracker
from typing import Any

import dask.system
import dask.utils
import distributed
import distributed.system
from distributed.comm.addressing import parse_host_port
from distributed.comm.core import FatalCommClosedError
from distributed.core import Status
from distributed.deploy.utils import nprocesses_nthreads
from distributed.security import Security

from cluster.batch import BatchOptions, start_batch_cluster, wait_for_first_worker
from cluster.errors import (
    InvalidClusterOptionError,
    NoWorkersError,
    SchedulerUnreachableError,
    TLSConfigurationError,
)
from cluster.option_checks import check_count, check_seconds

__all__ = [
    "ClusterOptions",
    "EmbeddedPlan",
    "connect",
    "dashboard_link",
    "describe",
    "peak_worker_memory",
    "plan_embedded",
    "worker_memory_limit",
]

#: Address schemes a scheduler can listen on (``ucx`` needs the distributed-ucxx package).
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
#: Schemes whose connections are encrypted, hence need the three TLS files.
_TLS_SCHEMES = ("tls", "wss")
#: The embedded cluster leaves this fraction of the machine's memory (at least
#: :data:`_MIN_HEADROOM_BYTES`, at most a quarter) to the client process and the OS.
_HEADROOM_FRACTION = 0.10
_MIN_HEADROOM_BYTES = 1 << 30
#: Loopback only: the embedded cluster must never listen on a public interface.
_LOOPBACK = "127.0.0.1"
#: Clients of embedded clusters started without the dashboard (their scheduler still
#: serves HTTP for health checks, so its services alone cannot tell).
_WITHOUT_DASHBOARD: weakref.WeakSet[distributed.Client] = weakref.WeakSet()


def _flag(name: str) -> str:
    """The command-line flag of an option, for error messages."""
    return {"n_workers": "--workers"}.get(name, "--" + name.replace("_", "-"))


@dataclass(frozen=True, kw_only=True)
class ClusterOptions:
    """Where the computation runs: an embedded local cluster, or an existing scheduler.

    Attributes
    ----------
    scheduler : str or None
        Address of a running dask scheduler, like ``tcp://host:8786`` or
        ``tls://host:8786`` (no scheme means ``tcp``).  ``None`` starts an embedded
        cluster on this machine.
    n_workers : int or None
        Embedded cluster only: number of worker processes.  ``None`` sizes it to the
        machine (see :func:`plan_embedded`).
    threads_per_worker : int or None
        Embedded cluster only: threads of each worker process.
    memory_limit : str, int or None
        Embedded cluster only: memory limit of *each* worker, as bytes or a string
        like ``"4GB"`` or ``"4GiB"``.  A worker that exceeds it spills to disk, then is
        restarted by its nanny.  ``None`` divides the machine's memory between workers.
    tls_ca_file, tls_cert, tls_key : str or None
        Existing scheduler only: PEM files of the cluster's certificate authority,
        this client's certificate and its private key.  Give all three, with a
        ``tls://`` address.
    connect_timeout_s : float
        Seconds to wait for an existing scheduler to answer before giving up.
    dashboard : bool
        Embedded or batch cluster: serve the diagnostic dashboard (on 127.0.0.1, a
        free port, for the embedded cluster; its pages need bokeh installed).
    local_directory : str or None
        Embedded cluster only: where workers spill to disk and keep scratch files;
        ``None`` uses dask's default (a ``dask-scratch-space`` folder in the
        temporary directory).
    batch : BatchOptions or None
        Start the scheduler here and run the workers in jobs of a batch system
        (``--cluster slurm``); excludes ``scheduler``, the embedded cluster's options
        and TLS.
    """

    scheduler: str | None = None
    n_workers: int | None = None
    threads_per_worker: int | None = None
    memory_limit: str | int | None = None
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    connect_timeout_s: float = 20.0
    dashboard: bool = True
    local_directory: str | None = None
    batch: BatchOptions | None = None

    @property
    def memory_limit_bytes(self) -> int | None:
        """The per-worker memory limit in bytes, or None when not given.

        Raises
        ------
        InvalidClusterOptionError
            The value cannot be parsed or is not positive.
        """
        value = self.memory_limit
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise InvalidClusterOptionError(
                f"--memory-limit must be bytes or a size like '4GiB', got {value!r}"
            )
        if isinstance(value, str):
            try:
                value = int(dask.utils.parse_bytes(value.strip()))
            except (ValueError, TypeError):
                raise InvalidClusterOptionError(
                    f"--memory-limit {self.memory_limit!r} is not a size;"
                    " give bytes or a size like '4GB' or '4GiB'"
                ) from None
        if value <= 0:
            raise InvalidClusterOptionError(
                f"--memory-limit must be positive, got {self.memory_limit!r}; give a size like '4GiB'"
            )
        return value

    @property
    def uses_tls(self) -> bool:
        """True when any TLS file is given."""
        return any(f is not None for f in (self.tls_ca_file, self.tls_cert, self.tls_key))

    def validate(self) -> None:
        """Check every option without touching the network.

        Raises
        ------
        InvalidClusterOptionError
            A count is below 1, the memory limit is not a positive size, the timeout
            is not positive, the scheduler address is malformed, options of the
            embedded cluster are combined with a scheduler address or a batch
            system, or the batch options are wrong (see
            :meth:`cluster.batch.BatchOptions.validate`).
        TLSConfigurationError
            TLS files are given only in part, are missing on disk, do not match the
            address scheme, or are given without a scheduler.
        """
        for name in ("n_workers", "threads_per_worker"):
            if (count := getattr(self, name)) is not None:
                check_count(count, flag=_flag(name))
        self.memory_limit_bytes  # noqa: B018 - raises on a bad value
        check_seconds(self.connect_timeout_s, flag="--connect-timeout-s")
        if self.local_directory is not None:
            if not self.local_directory.strip():
                raise InvalidClusterOptionError(
                    "--local-directory is empty; give a folder for the workers' scratch files"
                )
            if os.path.exists(self.local_directory) and not os.path.isdir(self.local_directory):
                raise InvalidClusterOptionError(
                    f"--local-directory {self.local_directory} is a file, not a folder;"
                    " give a folder for the workers' scratch files"
                )
        if self.batch is not None:
            self._validate_batch(self.batch)
            return
        if self.scheduler is None:
            if self.uses_tls:
                raise TLSConfigurationError(
                    "TLS files apply to an existing scheduler only (the embedded cluster"
                    " listens on 127.0.0.1); give --scheduler tls://host:port or drop them"
                )
            return
        scheme = _check_address(self.scheduler)
        embedded_only = [
            _flag(name)
            for name in ("n_workers", "threads_per_worker", "memory_limit", "local_directory")
            if getattr(self, name) is not None
        ]
        if not self.dashboard:
            embedded_only.append("--no-dashboard")
        if embedded_only:
            raise InvalidClusterOptionError(
                f"{', '.join(embedded_only)} only apply to the embedded cluster, not to the"
                f" existing scheduler {self.scheduler}; drop them or drop --scheduler"
            )
        self._validate_tls(scheme)

    def _validate_batch(self, batch: BatchOptions) -> None:
        given = f"--cluster {batch.system}"
        if self.scheduler is not None:
            raise InvalidClusterOptionError(
                f"{given} starts its own dask scheduler; drop --scheduler {self.scheduler} or {given}"
            )
        embedded_only = [
            _flag(name)
            for name in ("n_workers", "threads_per_worker", "memory_limit", "local_directory")
            if getattr(self, name) is not None
        ]
        if embedded_only:
            raise InvalidClusterOptionError(
                f"{', '.join(embedded_only)} only apply to the embedded cluster, not to {given};"
                " size the jobs with --jobs, --job-cores and --job-memory instead"
            )
        if self.uses_tls:
            raise TLSConfigurationError(
                f"TLS files apply to an existing scheduler only, not to {given}; drop them"
            )
        batch.validate()

    def _validate_tls(self, scheme: str) -> None:
        files = {
            "tls_ca_file": self.tls_ca_file,
            "tls_cert": self.tls_cert,
            "tls_key": self.tls_key,
        }
        if scheme in _TLS_SCHEMES and not self.uses_tls:
            raise TLSConfigurationError(
                f"the scheduler address {self.scheduler} uses TLS; give --tls-ca-file,"
                " --tls-cert and --tls-key"
            )
        if not self.uses_tls:
            return
        missing = [_flag(name) for name, path in files.items() if not path]
        if missing:
            raise TLSConfigurationError(
                f"TLS needs --tls-ca-file, --tls-cert and --tls-key together; missing {', '.join(missing)}"
            )
        if scheme not in _TLS_SCHEMES:
            raise TLSConfigurationError(
                f"TLS files are given but the scheduler address {self.scheduler} is not"
                " encrypted; use tls://host:port"
            )
        for name, path in files.items():
            assert path is not None  # checked above
            if not os.path.isfile(path):
                what = "is not a file" if os.path.exists(path) else "does not exist"
                raise TLSConfigurationError(f"{_flag(name)} {path} {what}; give the path of a PEM file")
            if not os.access(path, os.R_OK):
                raise TLSConfigurationError(f"{_flag(name)} {path} is not readable; check its permissions")


def _check_address(address: str) -> str:
    """Return the scheme of a scheduler address, or raise on a malformed one."""
    if not isinstance(address, str) or not address.strip() or address != address.strip():
        raise InvalidClusterOptionError(
            f"--scheduler {address!r} is not an address; give one like tcp://host:8786"
        )
    scheme, sep, location = address.rpartition("://")
    scheme = scheme if sep else "tcp"
    if scheme not in SCHEDULER_SCHEMES:
        hint = " (that is the dashboard's address?)" if scheme in ("http", "https") else ""
        raise InvalidClusterOptionError(
            f"--scheduler {address} has the unknown protocol {scheme!r}{hint};"
            " give one like tcp://host:8786 or tls://host:8786"
        )
    try:
        host, port = parse_host_port(location)
    except ValueError:
        host, port = "", 0
    if not host or not 0 < port < 65536:
        raise InvalidClusterOptionError(
            f"--scheduler {address} needs a host and a port; give one like {scheme}://host:8786"
        )
    return scheme


@dataclass(frozen=True, kw_only=True)
class EmbeddedPlan:
    """The size of an embedded cluster, as :func:`plan_embedded` chose it.

    Attributes
    ----------
    n_workers : int
        Worker processes.
    threads_per_worker : int
        Threads of each worker.
    memory_limit : int
        Memory limit of each worker in bytes.
    """

    n_workers: int
    threads_per_worker: int
    memory_limit: int


def plan_embedded(
    options: ClusterOptions,
    *,
    cores: int | None = None,
    memory_bytes: int | None = None,
) -> EmbeddedPlan:
    """Size the embedded cluster: fill the gaps the options leave from the machine's size.

    With neither count given, workers and threads follow dask's own split of the cores
    (one single-threaded worker per core up to 4 cores, then about sqrt(cores) workers).
    With one count given, the other divides the cores by it.  Without a memory limit,
    each worker gets ``(memory - headroom) / n_workers``, where the headroom left to
    this process and the OS is 10% of the memory, at least 1 GiB, at most a quarter.

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
    return EmbeddedPlan(n_workers=n_workers, threads_per_worker=threads, memory_limit=limit)


def _split_cores(cores: int) -> tuple[int, int]:
    """Workers and threads for ``cores`` cores, as dask's LocalCluster splits them."""
    workers, threads = nprocesses_nthreads(max(1, cores))
    return int(workers), int(threads)


@contextmanager
def connect(options: ClusterOptions) -> Iterator[distributed.Client]:
    """Open a Client on an embedded, existing or batch cluster; close all on exit.

    Without ``options.scheduler`` this starts a :class:`distributed.LocalCluster` of
    worker *processes* sized by :func:`plan_embedded`, whose scheduler, workers and
    dashboard listen on 127.0.0.1 only, with distributed's log output limited to
    warnings.  With a scheduler address it connects to it, over TLS when the address
    is ``tls://``, waiting at most ``options.connect_timeout_s``.  With
    ``options.batch`` it starts a scheduler on the batch interface, submits the
    worker jobs and waits until the first worker joins, at most the batch start
    timeout.

    The client is dask's default scheduler inside the ``with`` block.  On exit, also
    through an exception or Ctrl-C, the client and any embedded or batch cluster are
    closed (batch jobs are cancelled); an existing scheduler and its workers keep
    running.

    Parameters
    ----------
    options : ClusterOptions
        Where to run; validated here.

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
    :func:`_sigint_blocked`), so the interrupt reaches only this process, which
    cancels the work and closes the cluster: workers dying of their own
    KeyboardInterrupt would print tracebacks and make the scheduler log lost tasks.

    Memory: the embedded workers together may use the machine's memory minus the
    headroom of :func:`plan_embedded`; this process holds the client and the scheduler
    (tens of MB plus the results it gathers).
    """
    options.validate()
    with ExitStack() as opened:  # closes in reverse order: the client, then any cluster
        if options.scheduler is not None:
            client = _connect_existing(options)
            opened.callback(client.close)
        else:
            if options.batch is not None:
                cluster = start_batch_cluster(options.batch, dashboard=options.dashboard)
                opened.callback(cluster.close)
            else:
                with _sigint_blocked():
                    cluster = _start_embedded(options)
                    opened.callback(cluster.close)
                # a Ctrl-C pressed while the cluster started is raised on leaving the
                # block above, once the cluster is registered for closing
            client = distributed.Client(cluster)
            opened.callback(client.close)
            if not options.dashboard:
                _WITHOUT_DASHBOARD.add(client)
            if options.batch is not None:
                wait_for_first_worker(client, options.batch)
        yield client


@contextmanager
def _sigint_blocked() -> Iterator[None]:
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


def _start_embedded(options: ClusterOptions) -> distributed.LocalCluster:
    plan = plan_embedded(options)
    return distributed.LocalCluster(
        n_workers=plan.n_workers,
        threads_per_worker=plan.threads_per_worker,
        memory_limit=plan.memory_limit,
        processes=True,
        host=_LOOPBACK,
        scheduler_port=0,
        # distributed always serves HTTP (health checks, metrics); keep it on loopback
        # and a free port even without the dashboard, whose pages are then left out.
        dashboard_address=f"{_LOOPBACK}:0",
        scheduler_kwargs={"dashboard": options.dashboard},
        worker_dashboard_address=None,
        protocol="tcp",
        silence_logs=logging.WARNING,
        local_directory=options.local_directory,
        plugins=(_QuietShutdown(),),
    )


class _QuietShutdown(distributed.WorkerPlugin):  # type: ignore[misc]
    """Embedded workers log nothing about their own shutdown.

    Closing the cluster while a task runs (Ctrl-C, or an error elsewhere) makes a
    worker log, on the user's terminal under vidsvd's one-line message, ``WARNING -
    Async instruction for <Task cancelled ...> ended with CancelledError`` and, when a
    heartbeat was on its way as the scheduler closed, ``ERROR - Failed to communicate
    with scheduler during heartbeat`` with a traceback.  Records of the worker's
    loggers are dropped while the worker is closing; before that they all show.
    """

    name = "vidsvd-quiet-shutdown"

    def setup(self, worker: distributed.Worker) -> None:
        def running(_record: logging.LogRecord) -> bool:
            return worker.status not in _SHUTTING_DOWN

        for name in ("distributed.worker", "distributed.worker.state_machine"):
            logging.getLogger(name).addFilter(running)


_SHUTTING_DOWN = frozenset({Status.closing, Status.closing_gracefully, Status.closed})


def _connect_existing(options: ClusterOptions) -> distributed.Client:
    address = options.scheduler
    assert address is not None
    timeout = options.connect_timeout_s
    security = None
    if options.uses_tls:
        _check_tls_files(options)
        security = Security(
            tls_ca_file=options.tls_ca_file,
            tls_client_cert=options.tls_cert,
            tls_client_key=options.tls_key,
            require_encryption=True,
        )
    try:
        return distributed.Client(address, timeout=timeout, security=security)
    except OSError as exc:  # ssl.SSLError, CommClosedError and TimeoutError are OSErrors
        if security is not None and _is_tls_failure(exc):
            raise TLSConfigurationError(
                f"TLS with the dask scheduler at {address} failed: {_tls_reason(exc)};"
                " check --tls-ca-file, --tls-cert and --tls-key"
            ) from exc
        raise SchedulerUnreachableError(
            f"cannot reach the dask scheduler at {address} within {timeout:g} s"
            f" ({_root_reason(exc)}); check that it is running and the address"
        ) from exc


def _check_tls_files(options: ClusterOptions) -> None:
    """Load the PEM files as dask will, to name the faulty one before any handshake."""
    ca_file, cert, key = options.tls_ca_file, options.tls_cert, options.tls_key
    assert ca_file is not None and cert is not None and key is not None
    try:
        with open(key, "rb") as stream:
            encrypted = b"ENCRYPTED" in stream.read()
    except OSError as exc:
        raise TLSConfigurationError(f"cannot read --tls-key {key} ({exc.strerror})") from None
    if encrypted:
        raise TLSConfigurationError(
            f"--tls-key {key} is encrypted and dask cannot ask for its passphrase;"
            " give an unencrypted copy (openssl pkey -in KEY -out PLAIN_KEY)"
        )
    try:
        ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError):
        raise TLSConfigurationError(
            f"--tls-ca-file {ca_file} holds no PEM certificate; give the cluster CA's certificate"
        ) from None
    try:
        ssl.create_default_context().load_cert_chain(cert, key, password=lambda: b"")
    except (ssl.SSLError, OSError) as exc:
        if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
            raise TLSConfigurationError(
                f"--tls-key {key} is not the key of --tls-cert {cert}; give the matching pair"
            ) from None
        try:
            ssl.create_default_context(cafile=cert)
        except (ssl.SSLError, OSError):
            raise TLSConfigurationError(
                f"--tls-cert {cert} holds no PEM certificate; give this client's certificate"
            ) from None
        raise TLSConfigurationError(
            f"--tls-key {key} holds no PEM private key; give the key of --tls-cert {cert}"
        ) from None


#: What OpenSSL's codes mean for someone connecting to a dask scheduler.
_TLS_HINTS = {
    "TLSV1_ALERT_UNKNOWN_CA": "the scheduler does not trust --tls-cert (signed by another CA)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the scheduler rejected --tls-cert",
    "TLSV1_ALERT_ACCESS_DENIED": "the scheduler rejected --tls-cert",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the scheduler says --tls-cert has expired",
    "WRONG_VERSION_NUMBER": "the scheduler does not speak TLS at this address",
}


def _tls_reason(exc: BaseException) -> str:
    chain = list(_exception_chain(exc))
    for error in chain:
        if isinstance(error, ssl.SSLCertVerificationError):
            detail = error.verify_message or "verification failed"
            return f"the scheduler's certificate does not verify against --tls-ca-file ({detail})"
    codes = [code for error in chain for code in re.findall(r"\[SSL: ([A-Z0-9_]+)\]", str(error))]
    codes += [str(e.reason) for e in chain if isinstance(e, ssl.SSLError) and e.reason]
    for code in codes:
        if code in _TLS_HINTS:
            return f"{_TLS_HINTS[code]} ({code})"
    if any(isinstance(e, ssl.SSLEOFError) or "EOF occurred" in str(e) for e in chain):
        # TLS 1.3 lets the client finish its handshake before the server checks the
        # client's certificate: a rejection can then arrive as a bare end of stream.
        return "the scheduler closed the TLS connection; most likely it does not trust --tls-cert"
    return codes[0] if codes else _root_reason(exc)


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_tls_failure(exc: BaseException) -> bool:
    return any(isinstance(e, ssl.SSLError | FatalCommClosedError) for e in _exception_chain(exc))


def _root_reason(exc: BaseException) -> str:
    """The innermost useful message of an exception chain, on one short line."""
    chain = list(_exception_chain(exc))
    for error in reversed(chain):
        if isinstance(error, ssl.SSLError) and getattr(error, "reason", None):
            return str(error.reason)
    text = str(chain[-1]) or type(chain[-1]).__name__
    text = text.split(": ", 1)[-1] if text.startswith("in <") else text
    return " ".join(text.split())[:160]


def _scheduler_info(client: distributed.Client) -> dict[str, Any]:
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # distributed before n_workers was a parameter reports all workers
        info = client.scheduler_info()
    return dict(info)


def _address(client: distributed.Client) -> str:
    scheduler = client.scheduler
    return str(scheduler.address) if scheduler is not None else "(closed client)"


def _workers(client: distributed.Client) -> dict[str, dict[str, Any]]:
    return dict(_scheduler_info(client).get("workers", {}))


def describe(client: distributed.Client) -> str:
    """One line about the cluster: scheduler address, workers, threads, total memory.

    Example: ``dask scheduler tcp://127.0.0.1:40331: 2 workers, 4 threads, 14.00 GiB
    memory``.  Workers without a memory limit make the total ``unlimited``.
    """
    workers = _workers(client).values()
    threads = sum(int(w.get("nthreads", 0)) for w in workers)
    limits = [int(w.get("memory_limit") or 0) for w in workers]
    unlimited = any(limit <= 0 for limit in limits)
    memory = "unlimited" if unlimited else dask.utils.format_bytes(sum(limits))
    n = len(limits)
    return (
        f"dask scheduler {_address(client)}: {n} worker{'s' if n != 1 else ''},"
        f" {threads} thread{'s' if threads != 1 else ''}, {memory} memory"
    )


def dashboard_link(client: distributed.Client) -> str | None:
    """The URL of the scheduler's dashboard, or None when it serves none.

    The URL uses the host of the scheduler's address as this client sees it.  The
    dashboard's pages need bokeh on the scheduler's machine; without it the URL shows
    a page that says so.
    """
    if client in _WITHOUT_DASHBOARD:
        return None
    services = _scheduler_info(client).get("services", {})
    if "dashboard" not in services:
        return None
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
    workers = _workers(client)
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
    samples = [w.get("metrics", {}).get("memory") for w in _workers(client).values()]
    values = [int(v) for v in samples if isinstance(v, int | float) and not isinstance(v, bool)]
    return max(values) if values else None


def _no_workers(client: distributed.Client) -> NoWorkersError:
    address = _address(client)
    return NoWorkersError(
        f"the dask scheduler at {address} has no workers; start some with `dask worker {address}` and retry"
    )
