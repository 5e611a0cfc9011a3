"""Batch-system options (SLURM, PBS): what a user asks for, checked and planned, without submitting.

Pure apart from reading dask's jobqueue configuration and the machine's network
interfaces: :meth:`BatchOptions.plan` resolves every setting from the flags or the
configuration and checks it, so a bad walltime or memory is one line before any job
is submitted.  :mod:`cluster.batch` submits what is planned here.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dask.config
import dask.utils
import psutil

from cluster.errors import InvalidClusterOptionError
from cluster.jobqueue import import_jobqueue
from cluster.option_checks import check_count, check_seconds

__all__ = [
    "DASHBOARD_PORT",
    "PLACEHOLDER_SCHEDULER",
    "SYSTEMS",
    "BatchOptions",
    "BatchPlan",
    "BatchSystem",
    "batch_options",
    "check_environment",
    "config_value",
    "interface_address",
]

#: A job of less memory than this is taken for a size given without its unit.
_MIN_JOB_MEMORY = 128 << 20
#: The scheduler's dashboard port on ``--interface`` (a free one when taken).
DASHBOARD_PORT = 8787
#: The address jobqueue writes into a job script no scheduler has been started for.
PLACEHOLDER_SCHEDULER = "tcp://<scheduler-address>:8786"


@dataclass(frozen=True, kw_only=True)
class BatchSystem:
    """What vidsvd needs to know of one batch system.

    Attributes
    ----------
    name : str
        The value of ``--cluster`` and the section of dask's jobqueue configuration.
    title : str
        Its name in messages.
    submit, cancel : str
        Commands that submit a job script and cancel a job; both must be on PATH.
    status : str
        The command that lists one's jobs, for messages.
    cluster_class : str
        The dask_jobqueue class.
    days_in_walltime : bool
        Whether the walltime may start with days (``D-HH:MM:SS``).
    """

    name: str
    title: str
    submit: str
    cancel: str
    status: str
    cluster_class: str
    days_in_walltime: bool


SYSTEMS: Mapping[str, BatchSystem] = {
    "slurm": BatchSystem(
        name="slurm",
        title="SLURM",
        submit="sbatch",
        cancel="scancel",
        status="squeue --me",
        cluster_class="SLURMCluster",
        days_in_walltime=True,
    ),
    "pbs": BatchSystem(
        name="pbs",
        title="PBS",
        submit="qsub",
        cancel="qdel",
        status="qstat -u $USER",
        cluster_class="PBSCluster",
        days_in_walltime=False,
    ),
}

#: Command-line flag of each option that has one, for messages.
_FLAGS = {
    "jobs": "--jobs",
    "job_cores": "--job-cores",
    "job_memory": "--job-memory",
    "walltime": "--walltime",
    "queue": "--queue",
    "account": "--account",
    "job_directory": "--job-directory",
    "job_extra": "--job-extra",
    "interface": "--interface",
    "start_timeout_s": "--job-start-timeout",
}
#: Key of each option in dask's ``jobqueue.<system>`` configuration.
_CONFIG_KEYS = {
    "job_cores": "cores",
    "job_memory": "memory",
    "walltime": "walltime",
    "queue": "queue",
    "account": "account",
    "job_directory": "log-directory",
    "interface": "interface",
}
_WALLTIME = re.compile(r"(?:(?P<days>\d+)-)?(?P<hours>\d+):(?P<minutes>[0-5]\d):(?P<seconds>[0-5]\d)")


@dataclass(frozen=True, kw_only=True)
class BatchOptions:
    """Worker jobs on a batch system, as the ``--cluster`` flags give them.

    ``None`` means "take it from dask's jobqueue configuration" (see the module's
    documentation); cores, memory and the interface must come from one or the other.

    Attributes
    ----------
    system : str
        ``slurm`` or ``pbs``.
    jobs : int
        Batch jobs to submit; each runs one or more worker processes (dask-jobqueue
        splits a job's cores into about sqrt(cores) processes unless the
        configuration's ``processes`` says otherwise).
    job_cores : int or None
        Cores of each job.
    job_memory : str, int or None
        Memory of each job, as bytes or a size like ``"16GiB"``; its worker processes
        share it.
    walltime : str or None
        Run time limit of each job, ``HH:MM:SS`` (SLURM also ``D-HH:MM:SS``).
        dask-jobqueue's default is 00:30:00.
    queue : str or None
        Partition (SLURM) or queue (PBS).
    account : str or None
        Account charged for the jobs.
    job_directory : str or None
        Folder for the jobs' output and error logs (created).
    job_extra : tuple of str
        More directives, each without its ``#SBATCH``/``#PBS`` prefix, for example
        ``--constraint=skylake`` or ``-l place=scatter``.
    interface : str or None
        Network interface the compute nodes reach this machine on; the scheduler
        listens on its IPv4 address.
    start_timeout_s : float
        Seconds to wait for the first worker to join (jobs may wait in the queue).
    """

    system: str
    jobs: int = 1
    job_cores: int | None = None
    job_memory: str | int | None = None
    walltime: str | None = None
    queue: str | None = None
    account: str | None = None
    job_directory: str | None = None
    job_extra: tuple[str, ...] = ()
    interface: str | None = None
    start_timeout_s: float = 600.0

    @property
    def batch_system(self) -> BatchSystem:
        """The :class:`BatchSystem` named by :attr:`system`.

        Raises
        ------
        InvalidClusterOptionError
            The name is not one of :data:`SYSTEMS`.
        """
        try:
            return SYSTEMS[self.system]
        except (KeyError, TypeError):
            raise InvalidClusterOptionError(
                f"--cluster {self.system} is not a batch system vidsvd knows; give {' or '.join(SYSTEMS)}"
            ) from None

    def plan(self) -> BatchPlan:
        """Check every value, fill the gaps from dask's configuration; no network, no PATH.

        Raises
        ------
        InvalidClusterOptionError
            dask-jobqueue is not installed, a count is below 1, a size or walltime
            is malformed, a directive or name would break the job script, or cores,
            memory or the interface are given nowhere.
        """
        system = self.batch_system
        import_jobqueue(system)
        check_count(self.jobs, flag="--jobs")
        check_seconds(self.start_timeout_s, flag="--job-start-timeout")
        cores, cores_from = self._setting("job_cores")
        if cores is None:
            raise _missing(system, "job_cores", "cores of each job, e.g. --job-cores 8")
        check_count(cores, flag=cores_from)
        memory, memory_from = self._setting("job_memory")
        if memory is None:
            raise _missing(system, "job_memory", "memory of each job, e.g. --job-memory 32GiB")
        memory_bytes = _job_memory_bytes(memory, memory_from)
        walltime, walltime_from = self._setting("walltime")
        if walltime is not None:
            walltime = _check_walltime(system, walltime, walltime_from)
        names = {name: self._setting(name) for name in ("queue", "account", "interface")}
        for value, source in names.values():
            if value is not None:
                _check_token(value, source)
        interface = names["interface"][0]
        if interface is None:
            raise _missing(
                system,
                "interface",
                "the network interface the compute nodes reach this machine on"
                f" (this machine has {', '.join(_interfaces())}); the scheduler listens there",
            )
        directory, directory_from = self._setting("job_directory")
        if directory is not None:
            if not isinstance(directory, str) or not directory.strip():
                raise InvalidClusterOptionError(
                    f"{directory_from} is empty; give a folder for the jobs' logs"
                )
            directory = os.path.abspath(os.path.expanduser(directory))
        extra = tuple(config_value(system, "job-extra-directives") or ()) + tuple(self.job_extra)
        for directive in extra:
            _check_directive(system, directive)
        return BatchPlan(
            system=system,
            jobs=self.jobs,
            cores=cores,
            memory_bytes=memory_bytes,
            walltime=walltime,
            queue=names["queue"][0],
            account=names["account"][0],
            job_directory=directory,
            job_extra=extra,
            interface=interface,
            start_timeout_s=float(self.start_timeout_s),
        )

    def validate(self) -> None:
        """Check the values (:meth:`plan`) and this machine (:func:`check_environment`).

        Raises
        ------
        InvalidClusterOptionError
            See :meth:`plan` and :func:`check_environment`.
        """
        check_environment(self.plan())

    def _setting(self, name: str) -> tuple[Any, str]:
        """The value of an option, or of its configuration key; and where it came from."""
        value = getattr(self, name)
        if value is not None:
            shown = value if not isinstance(value, str) or value.isprintable() else repr(value)
            return value, f"{_FLAGS[name]} {shown}"
        key = _CONFIG_KEYS[name]
        value = config_value(self.batch_system, key)
        return value, f"jobqueue.{self.system}.{key} {value!r} in dask's configuration"


@dataclass(frozen=True, kw_only=True)
class BatchPlan:
    """Checked, complete settings of the worker jobs (:meth:`BatchOptions.plan`).

    Attributes
    ----------
    system : BatchSystem
    jobs, cores : int
    memory_bytes : int
        Memory of each job in bytes.
    walltime, queue, account : str or None
    job_directory : str or None
        Absolute path of the logs' folder.
    job_extra : tuple of str
        Every extra directive: the configuration's, then the options'.
    interface : str
    start_timeout_s : float
    """

    system: BatchSystem
    jobs: int
    cores: int
    memory_bytes: int
    walltime: str | None
    queue: str | None
    account: str | None
    job_directory: str | None
    job_extra: tuple[str, ...]
    interface: str
    start_timeout_s: float

    def job_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of dask-jobqueue's job and cluster classes."""
        prologue = list(config_value(self.system, "job-script-prologue") or [])
        prologue.append(f"cd {shlex.quote(os.getcwd())}")
        kwargs: dict[str, Any] = {
            "cores": self.cores,
            "memory": self.memory_bytes,
            "interface": self.interface,
            "job_extra_directives": list(self.job_extra),
            "job_script_prologue": prologue,
        }
        optional = {
            "walltime": self.walltime,
            "queue": self.queue,
            "account": self.account,
            "log_directory": self.job_directory,
        }
        kwargs.update({key: value for key, value in optional.items() if value is not None})
        return kwargs


def batch_options(system: str | None, **flags: Any) -> BatchOptions | None:
    """Build :class:`BatchOptions` from command-line values (``None`` when not given).

    Parameters
    ----------
    system : str or None
        The value of ``--cluster``; ``None`` when not given.
    **flags
        The other batch options by field name (``jobs``, ``job_cores``...), ``None``
        (or an empty list for ``job_extra``) when not given.

    Returns
    -------
    BatchOptions or None
        None when neither ``system`` nor any flag is given.

    Raises
    ------
    InvalidClusterOptionError
        A batch option is given without ``--cluster``, or a name is unknown.
    """
    unknown = sorted(set(flags) - set(_FLAGS))
    if unknown:
        raise TypeError(f"unknown batch options: {', '.join(unknown)}")
    given = {name: value for name, value in flags.items() if value is not None and value != []}
    if system is None:
        if given:
            named = ", ".join(_FLAGS[name] for name in _FLAGS if name in given)
            raise InvalidClusterOptionError(
                f"{named} only apply to a batch system; add --cluster slurm or --cluster pbs, or drop them"
            )
        return None
    if "job_extra" in given:
        given["job_extra"] = tuple(given["job_extra"])
    return BatchOptions(system=system, **given)


def config_value(system: BatchSystem, key: str) -> Any:
    """The value of ``jobqueue.<system>.<key>`` in dask's configuration, or None."""
    return dask.config.get(f"jobqueue.{system.name}.{key}", None)


def _missing(system: BatchSystem, name: str, what: str) -> InvalidClusterOptionError:
    return InvalidClusterOptionError(
        f"--cluster {system.name} needs {_FLAGS[name]}: {what}"
        f" (or jobqueue.{system.name}.{_CONFIG_KEYS[name]} in dask's configuration)"
    )


def _job_memory_bytes(value: Any, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidClusterOptionError(f"{source} is not a size; give one like 32GiB")
    try:
        size = int(dask.utils.parse_bytes(value.strip() if isinstance(value, str) else value))
    except (ValueError, TypeError):
        raise InvalidClusterOptionError(f"{source} is not a size; give one like 32GiB") from None
    if size <= 0:
        raise InvalidClusterOptionError(f"{source} must be positive; give a size like 32GiB")
    if size < _MIN_JOB_MEMORY:
        raise InvalidClusterOptionError(
            f"{source} is only {dask.utils.format_bytes(size)}; give a size with its unit like 32GiB"
        )
    return size


def _check_walltime(system: BatchSystem, value: Any, source: str) -> str:
    example = "02:00:00" + (" or 1-00:00:00" if system.days_in_walltime else "")
    match = _WALLTIME.fullmatch(value) if isinstance(value, str) else None
    if match is not None and match["days"] and not system.days_in_walltime:
        hours = int(match["days"]) * 24 + int(match["hours"])
        raise InvalidClusterOptionError(
            f"{source} is not a walltime {system.title} takes; give HH:MM:SS like"
            f" {hours:02d}:{match['minutes']}:{match['seconds']}"
        )
    if match is None:
        form = "HH:MM:SS" + (" or D-HH:MM:SS" if system.days_in_walltime else "")
        raise InvalidClusterOptionError(f"{source} is not a walltime; give {form} like {example}")
    seconds = int(match["days"] or 0) * 86400 + int(match["hours"]) * 3600
    seconds += int(match["minutes"]) * 60 + int(match["seconds"])
    if seconds == 0:
        raise InvalidClusterOptionError(f"{source} is zero; give a walltime like {example}")
    return str(value)


def _check_token(value: Any, source: str) -> None:
    """A queue, account or interface name: one word (it becomes part of a directive)."""
    if not isinstance(value, str) or not value or value.split() != [value]:
        raise InvalidClusterOptionError(f"{source} must be one word without spaces")


def _check_directive(system: BatchSystem, directive: Any) -> None:
    prefix = "#SBATCH" if system.name == "slurm" else "#PBS"
    if not isinstance(directive, str) or not directive.strip() or "\n" in directive or "\r" in directive:
        raise InvalidClusterOptionError(
            f"--job-extra {directive!r} is not a directive;"
            " give one option per flag, like --constraint=skylake"
        )
    if directive.lstrip().startswith("#"):
        raise InvalidClusterOptionError(
            f"--job-extra {directive!r}: give the directive without {prefix}, vidsvd adds it"
        )


def _interfaces() -> list[str]:
    return sorted(psutil.net_if_addrs())


def interface_address(name: str) -> str:
    """The IPv4 address of this machine's interface ``name``."""
    addresses = psutil.net_if_addrs()
    if name not in addresses:
        raise InvalidClusterOptionError(
            f"--interface {name} is not a network interface of this machine (it has"
            f" {', '.join(_interfaces())}); give the one the compute nodes reach it on"
        )
    ipv4 = [a.address for a in addresses[name] if a.family == socket.AF_INET]
    if not ipv4:
        raise InvalidClusterOptionError(
            f"--interface {name} has no IPv4 address; give one the compute nodes reach this machine on"
        )
    return str(ipv4[0])


def check_environment(plan: BatchPlan) -> None:
    """Check that this machine can submit and cancel jobs and has the interface.

    Raises
    ------
    InvalidClusterOptionError
        The submit or cancel command is not on PATH, the interface does not exist
        here or has no IPv4 address, or the logs' folder is a file.
    """
    system = plan.system
    for command, purpose in ((system.submit, "to submit"), (system.cancel, "to cancel")):
        if shutil.which(command) is None:
            raise InvalidClusterOptionError(
                f"--cluster {system.name} needs {command} on PATH {purpose} jobs: run vidsvd on a"
                f" {system.title} login node (or load its module)"
            )
    interface_address(plan.interface)
    directory = plan.job_directory
    if directory is not None and os.path.exists(directory) and not os.path.isdir(directory):
        raise InvalidClusterOptionError(
            f"--job-directory {directory} is a file, not a folder; give a folder for the jobs' logs"
        )
