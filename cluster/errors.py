"""Errors of the ``cluster`` package: everything that can go wrong reaching a dask cluster.

Every class derives from :class:`ClusterError` *and* from the matching built-in
exception, as in ``storage.errors``: an unreachable scheduler is also a
``ConnectionError``, a bad option also a ``ValueError``.  The message of each error is
one line that says what is wrong and how to fix it; the command line prints it as is,
without a traceback.  ``ClusterError`` derives from :class:`storage.errors.VidsvdError`,
so every error vidsvd reports to its user has one base (the one import of storage
that cluster makes).
"""

from __future__ import annotations

from storage.errors import VidsvdError

__all__ = [
    "BatchSubmitError",
    "ClusterError",
    "InvalidClusterOptionError",
    "NoWorkersError",
    "SchedulerUnreachableError",
    "TLSConfigurationError",
    "TaskKillsWorkersError",
    "WorkerEnvironmentError",
    "WorkersLostError",
]


class ClusterError(VidsvdError):
    """Base class of every error about the dask cluster vidsvd reports to its user."""


class SchedulerUnreachableError(ClusterError, ConnectionError):
    """No dask scheduler answered at the given address within the connect timeout."""


class InvalidClusterOptionError(ClusterError, ValueError):
    """A cluster option has a value outside its allowed range, or does not apply."""


class TLSConfigurationError(ClusterError, ValueError):
    """The TLS files are missing, incomplete, unreadable or rejected by the scheduler."""


class NoWorkersError(ClusterError, RuntimeError):
    """The scheduler is reachable but has no workers to run tasks on."""


class BatchSubmitError(ClusterError, RuntimeError):
    """The batch system (``sbatch``, ``qsub``) refused a worker job."""


class WorkersLostError(ClusterError, RuntimeError):
    """Every worker left the scheduler during a computation and none came back in time."""


class WorkerEnvironmentError(ClusterError, RuntimeError):
    """Workers cannot import vidsvd's task modules, or have other versions of them than this machine."""


class TaskKillsWorkersError(ClusterError, RuntimeError):
    """One task was run on several workers and each died while running it (dask's KilledWorker)."""
