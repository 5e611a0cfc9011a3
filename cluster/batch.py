"""Dask on HPC batch systems (SLURM, PBS) through dask-jobqueue: options, checks, job scripts.

With ``--cluster slurm`` (or ``pbs``) vidsvd runs the dask scheduler in its own
process, on the machine it was started on (a login node), and submits ``--jobs``
batch jobs, each asking for ``--job-cores`` cores and ``--job-memory`` memory for
``--walltime``; each job runs ``dask worker`` processes that connect back to that
scheduler.  When the command ends, also on an error or Ctrl-C, the jobs are
cancelled (``scancel`` / ``qdel``): nothing is left queued or running.

The scheduler must listen where the compute nodes can reach it, so this is the one
place vidsvd listens beyond 127.0.0.1: on the address of the network interface named
by ``--interface`` (``ib0``, ``eth0``...), and only there (its dashboard too).  The
workers use the interface of the same name on their nodes.

Every option left out falls back to dask's own jobqueue configuration
(``jobqueue.slurm.*`` or ``jobqueue.pbs.*`` in ``~/.config/dask/jobqueue.yaml``, a
file of a folder named by ``DASK_CONFIG``, or ``DASK_JOBQUEUE__SLURM__CORES``-style
variables), where a site usually keeps its queue, account, ``python`` or
``local-directory``; the flags win over it.  ``--job-extra`` directives are added
after the configuration's ``job-extra-directives``.  The job script changes to the
folder vidsvd was started in, so relative store paths mean the same on every node
(the store itself must be on a shared file system or object storage).

Needs the ``hpc`` extra (``pip install 'vidsvd[hpc]'``, i.e. dask-jobqueue).
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import signal
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dask.config
import dask.utils
import psutil

from cluster.errors import BatchSubmitError, InvalidClusterOptionError, NoWorkersError
from cluster.option_checks import check_count, check_seconds

__all__ = [
    "SYSTEMS",
    "BatchOptions",
    "BatchPlan",
    "BatchSystem",
    "batch_options",
    "job_script",
    "load_jobqueue",
    "start_batch_cluster",
    "wait_for_first_worker",
]

#: A job of less memory than this is taken for a size given without its unit.
_MIN_JOB_MEMORY = 128 << 20
#: The scheduler's dashboard port on ``--interface`` (a free one when taken).
_DASHBOARD_PORT = 8787
#: The address jobqueue writes into a job script no scheduler has been started for.
_PLACEHOLDER_SCHEDULER = "tcp://<scheduler-address>:8786"


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
        _import_jobqueue(system)
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
        extra = tuple(_config(system, "job-extra-directives") or ()) + tuple(self.job_extra)
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
        value = _config(self.batch_system, key)
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
        prologue = list(_config(self.system, "job-script-prologue") or [])
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
    _interface_address(plan.interface)
    directory = plan.job_directory
    if directory is not None and os.path.exists(directory) and not os.path.isdir(directory):
        raise InvalidClusterOptionError(
            f"--job-directory {directory} is a file, not a folder; give a folder for the jobs' logs"
        )


def job_script(options: BatchOptions, *, scheduler: str = _PLACEHOLDER_SCHEDULER) -> str:
    """The job script each worker job would run, without starting or submitting anything.

    Parameters
    ----------
    options : BatchOptions
        Checked here (values only: no PATH, no interface lookup).
    scheduler : str
        Scheduler address written into the worker command; a placeholder by default.

    Returns
    -------
    str
        The script: shebang, ``#SBATCH``/``#PBS`` directives, prologue, the
        ``dask_worker`` command.
    """
    plan = options.plan()
    cluster_class = _cluster_class(plan.system)
    job = _job_class(cluster_class.job_cls)(scheduler, name="worker", **plan.job_kwargs())
    return str(job.job_script())


def start_batch_cluster(options: BatchOptions, *, dashboard: bool = True) -> Any:
    """Start the scheduler here and submit the worker jobs; return the jobqueue cluster.

    Returns once every job is *submitted* (not running: see
    :func:`wait_for_first_worker`).  The caller closes the cluster, which cancels the
    jobs.

    Parameters
    ----------
    options : BatchOptions
        Checked here, with :func:`check_environment`.
    dashboard : bool
        Serve the dashboard (port 8787 of the interface's address, or a free port).

    Returns
    -------
    dask_jobqueue.SLURMCluster or dask_jobqueue.PBSCluster

    Raises
    ------
    InvalidClusterOptionError
        See :meth:`BatchOptions.validate`; also a logs' folder that cannot be created.
    BatchSubmitError
        The submit command refused a job; the jobs already submitted are cancelled.
    """
    plan = options.plan()
    check_environment(plan)
    address = _interface_address(plan.interface)
    scheduler_options = {
        "dashboard": dashboard,
        "dashboard_address": f"{address}:{_DASHBOARD_PORT if dashboard else 0}",
        **(_config(plan.system, "scheduler-options") or {}),
    }
    cluster_class = _cluster_class(plan.system)
    try:
        cluster = cluster_class(
            job_cls=_job_class(cluster_class.job_cls),
            scheduler_options=scheduler_options,
            **plan.job_kwargs(),
        )
    except OSError as exc:  # the logs' folder is made by the job class
        raise InvalidClusterOptionError(
            f"--job-directory {plan.job_directory} cannot be created ({exc.strerror or exc});"
            " give a folder you can write to"
        ) from None
    try:
        cluster.sync(_submit, cluster, plan.jobs)
    except (RuntimeError, ValueError) as exc:  # the command failed, or printed no job id
        cluster.close()
        raise BatchSubmitError(
            f"{plan.system.submit} refused the worker job: {_submit_failure(exc)}; check --queue,"
            " --account, --walltime, --job-cores and --job-memory against the queue's limits"
        ) from exc
    except BaseException:
        cluster.close()
        raise
    return cluster


def wait_for_first_worker(client: Any, options: BatchOptions) -> None:
    """Wait until a worker of the jobs joined the scheduler, at most the start timeout.

    Raises
    ------
    NoWorkersError
        No worker joined in time (the caller then closes the cluster, which cancels
        the jobs).
    """
    plan = options.plan()
    try:
        client.wait_for_workers(1, timeout=plan.start_timeout_s)
    except TimeoutError:
        system = plan.system
        logs = f" in {plan.job_directory}" if plan.job_directory else ""
        jobs = f"{plan.jobs} {system.title} job{'s' if plan.jobs != 1 else ''}"
        raise NoWorkersError(
            f"no dask worker of the {jobs} joined within {plan.start_timeout_s:g} s, so they were"
            f" cancelled; they may have waited in the queue (`{system.status}`) or failed (see their"
            f" logs{logs}); raise --job-start-timeout or fix the job"
        ) from None


async def _submit(cluster: Any, jobs: int) -> None:
    """Add ``jobs`` jobs to the cluster's spec and wait until each is submitted.

    ``cluster.scale`` does the same in the background, where a refused job would
    only be logged; awaiting the cluster's own state correction here makes the
    submit command's failure reach the caller instead.
    """
    while len(cluster.worker_spec) < jobs:
        cluster.worker_spec.update(cluster.new_worker_spec())
    await cluster._correct_state()


def _submit_failure(exc: BaseException) -> str:
    """The submit command's complaint, on one line, from dask-jobqueue's error."""
    text = str(exc)
    match = re.search(r"stderr:\n(.*)", text, re.S)
    detail = match.group(1) if match and match.group(1).strip() else text
    return " ".join(detail.split())[:300]


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


def _import_jobqueue(system: BatchSystem) -> Any:
    try:
        return load_jobqueue()
    except ImportError:
        raise InvalidClusterOptionError(
            f"--cluster {system.name} needs dask-jobqueue: pip install 'vidsvd[hpc]'"
        ) from None


def _cluster_class(system: BatchSystem) -> Any:
    return getattr(_import_jobqueue(system), system.cluster_class)


@functools.cache
def _job_class(base: type) -> type:
    """``base`` whose failed submission leaves the job marked failed.

    A job whose submit command failed would otherwise stay "created", and closing
    the cluster would then stop on an assertion instead of cancelling the others.
    """
    from distributed.core import Status

    class Job(base):  # type: ignore[misc]
        async def start(self) -> None:
            try:
                await super().start()
            except BaseException:
                self.status = Status.failed
                raise

    Job.__name__ = Job.__qualname__ = base.__name__
    return Job


def _config(system: BatchSystem, key: str) -> Any:
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


def _interface_address(name: str) -> str:
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
