"""The cluster flags every computing command shares, and the ClusterOptions they make."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pipelines.cli.arguments import positive_float, positive_int

if TYPE_CHECKING:
    from cluster.options import ClusterOptions

__all__ = ["BATCH_SYSTEMS", "add_cluster_flags", "cluster_options"]

BATCH_SYSTEMS = ("pbs", "slurm")
"""``--cluster`` choices; equal to :data:`cluster.batch.SYSTEMS` (a test keeps them equal),
spelled here so that ``--help`` does not import dask."""


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    """Add the embedded, existing-scheduler and batch-system flags to ``parser``."""
    group = parser.add_argument_group("cluster (default: an embedded LocalCluster on 127.0.0.1)")
    group.add_argument("--scheduler", metavar="ADDRESS", help="existing dask scheduler, e.g. tcp://host:8786")
    group.add_argument(
        "--workers", type=positive_int("--workers"), metavar="N", help="embedded: worker processes"
    )
    group.add_argument(
        "--threads-per-worker",
        type=positive_int("--threads-per-worker"),
        metavar="T",
        help="embedded: threads",
    )
    group.add_argument("--memory-limit", metavar="BYTES", help="embedded: memory per worker, e.g. 4GiB")
    group.add_argument(
        "--workerless-timeout",
        type=positive_float("--workerless-timeout", "1800"),
        metavar="S",
        help="seconds to wait while the cluster has no worker before stopping"
        " (600; batch: --job-start-timeout)",
    )
    group.add_argument("--tls-ca-file", metavar="PEM", help="CA certificate of a TLS scheduler")
    group.add_argument("--tls-cert", metavar="PEM", help="client certificate for a TLS scheduler")
    group.add_argument("--tls-key", metavar="PEM", help="client private key for a TLS scheduler")
    batch = parser.add_argument_group(
        "batch system (pip install 'vidsvd[hpc]'; what is not given comes from dask's jobqueue config)"
    )
    batch.add_argument(
        "--cluster",
        choices=BATCH_SYSTEMS,
        help="run the workers in SLURM or PBS jobs; the scheduler runs here, on --interface",
    )
    batch.add_argument("--jobs", type=positive_int("--jobs"), metavar="N", help="batch: jobs to submit (1)")
    batch.add_argument(
        "--job-cores", type=positive_int("--job-cores"), metavar="C", help="batch: cores per job"
    )
    batch.add_argument("--job-memory", metavar="SIZE", help="batch: memory per job, e.g. 32GiB")
    batch.add_argument("--walltime", metavar="HH:MM:SS", help="batch: run time limit per job (00:30:00)")
    batch.add_argument("--queue", metavar="NAME", help="batch: partition (SLURM) or queue (PBS)")
    batch.add_argument("--account", metavar="NAME", help="batch: account charged for the jobs")
    batch.add_argument("--job-directory", metavar="DIR", help="batch: folder for the jobs' logs")
    batch.add_argument(
        "--job-extra",
        action="append",
        metavar="DIRECTIVE",
        help="batch: one more directive without #SBATCH/#PBS, e.g. --job-extra=--constraint=skylake",
    )
    batch.add_argument(
        "--interface",
        metavar="NAME",
        help="batch: network interface the compute nodes reach this machine on, e.g. ib0",
    )
    batch.add_argument(
        "--job-start-timeout",
        type=positive_float("--job-start-timeout", "600"),
        metavar="S",
        help="batch: seconds to wait for the first worker (600)",
    )


def cluster_options(args: argparse.Namespace) -> ClusterOptions:
    """The validated :class:`cluster.client.ClusterOptions` of the parsed flags."""
    from cluster.batch_options import batch_options
    from cluster.options import ClusterOptions

    batch = batch_options(
        args.cluster,
        jobs=args.jobs,
        job_cores=args.job_cores,
        job_memory=args.job_memory,
        walltime=args.walltime,
        queue=args.queue,
        account=args.account,
        job_directory=args.job_directory,
        job_extra=args.job_extra,
        interface=args.interface,
        start_timeout_s=args.job_start_timeout,
    )
    options = ClusterOptions(
        scheduler=args.scheduler,
        n_workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        memory_limit=args.memory_limit,
        tls_ca_file=args.tls_ca_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        batch=batch,
        workerless_timeout=args.workerless_timeout,
    )
    options.validate()
    return options
