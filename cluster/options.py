"""Where a command computes: the options of the embedded, existing or batch cluster, checked.

Option names map to command-line flags by replacing ``_`` with ``-``
(``n_workers`` is ``--workers``); error messages use the flag spelling.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import dask.system
import dask.utils
from distributed.comm.addressing import parse_host_port

from cluster.batch_options import BatchOptions
from cluster.errors import (
    InvalidClusterOptionError,
    TLSConfigurationError,
)
from cluster.option_checks import check_count, check_seconds

__all__ = ["SCHEDULER_SCHEMES", "WORKERLESS_TIMEOUT_S", "ClusterOptions"]

#: Address schemes a scheduler can listen on (``ucx`` needs the distributed-ucxx package).
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
#: Seconds a computation on an embedded or existing cluster waits when the scheduler has
#: no worker left (a nanny restarts a lost embedded worker in seconds; an existing
#: cluster's own scaling may take minutes).  The batch job start timeout's default.
WORKERLESS_TIMEOUT_S = 600.0
#: Schemes whose connections are encrypted, hence need the three TLS files.
_TLS_SCHEMES = ("tls", "wss")
#: The embedded cluster leaves this fraction of the machine's memory (at least


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
    workerless_timeout : float or None
        Seconds a computation waits while the cluster has no worker before it stops
        (``--workerless-timeout``); ``None`` for the default of
        :attr:`workerless_timeout_s`.  For an existing cluster that scales from zero.
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
    workerless_timeout: float | None = None

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
    def workerless_timeout_s(self) -> float:
        """How long a computation may find the cluster without any worker before it stops.

        :attr:`workerless_timeout` when given; else a batch cluster's jobs get their
        start timeout (a job lost and requeued must start again), and other clusters
        :data:`WORKERLESS_TIMEOUT_S`.
        """
        if self.workerless_timeout is not None:
            return float(self.workerless_timeout)
        if self.batch is not None:
            return float(self.batch.start_timeout_s)
        return WORKERLESS_TIMEOUT_S

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
        if self.workerless_timeout is not None:
            check_seconds(self.workerless_timeout, flag="--workerless-timeout")
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
