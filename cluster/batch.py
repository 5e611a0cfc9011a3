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
import re
import time
from typing import Any, Final

from cluster.batch_options import (
    DASHBOARD_PORT,
    PLACEHOLDER_SCHEDULER,
    BatchOptions,
    BatchSystem,
    check_environment,
    config_value,
    interface_address,
)
from cluster.ctrl_c import CtrlCAtBoundaries
from cluster.errors import BatchSubmitError, InvalidClusterOptionError, NoWorkersError
from cluster.jobqueue import import_jobqueue

__all__ = ["job_script", "start_batch_cluster", "wait_for_first_worker"]

WAIT_SLICE_S: Final = 0.5
"""Seconds of one wait for the first worker; a Ctrl-C is acted on within one."""


def job_script(options: BatchOptions, *, scheduler: str = PLACEHOLDER_SCHEDULER) -> str:
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
    address = interface_address(plan.interface)
    scheduler_options = {
        "dashboard": dashboard,
        "dashboard_address": f"{address}:{DASHBOARD_PORT if dashboard else 0}",
        **(config_value(plan.system, "scheduler-options") or {}),
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


def wait_for_first_worker(client: Any, options: BatchOptions, *, ctrl_c: CtrlCAtBoundaries) -> None:
    """Wait until a worker of the jobs joined the scheduler, at most the start timeout.

    The wait asks the scheduler in slices of :data:`WAIT_SLICE_S` seconds, and a
    Ctrl-C noted by ``ctrl_c`` is raised between two slices (see
    :mod:`cluster.ctrl_c`): never inside dask's waiting code.

    Raises
    ------
    NoWorkersError
        No worker joined in time (the caller then closes the cluster, which cancels
        the jobs).
    KeyboardInterrupt
        Ctrl-C was pressed.
    """
    plan = options.plan()
    deadline = time.monotonic() + plan.start_timeout_s
    while (remaining := deadline - time.monotonic()) > 0:
        ctrl_c.raise_if_pressed()
        try:
            client.wait_for_workers(1, timeout=min(WAIT_SLICE_S, remaining))
        except TimeoutError:
            continue
        return
    system = plan.system  # a Ctrl-C pressed in the last slice wins on leaving ctrl_c's block
    logs = f" in {plan.job_directory}" if plan.job_directory else ""
    jobs = f"{plan.jobs} {system.title} job{'s' if plan.jobs != 1 else ''}"
    raise NoWorkersError(
        f"no dask worker of the {jobs} joined within {plan.start_timeout_s:g} s, so they were"
        f" cancelled; they may have waited in the queue (`{system.status}`) or failed (see their"
        f" logs{logs}); raise --job-start-timeout or fix the job"
    )


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


def _cluster_class(system: BatchSystem) -> Any:
    return getattr(import_jobqueue(system), system.cluster_class)


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
