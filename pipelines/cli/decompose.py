"""``vidsvd decompose``: the truncated SVD of the stored video, factors persisted as Zarr."""

from __future__ import annotations

import argparse

from pipelines.cli.arguments import Commands
from pipelines.cli.cluster_flags import add_cluster_flags, cluster_options
from pipelines.cli.console import say
from pipelines.cli.svd_flags import add_svd_flags, svd_parameters

__all__ = ["add_parser"]


def add_parser(commands: Commands) -> None:
    """Add ``decompose`` to the sub-command table."""
    parser = commands.add_parser(
        "decompose",
        help="truncated SVD of the stored video on dask.distributed; factors persisted as Zarr",
        description=(
            "Decompose the stored video's matrix M (pixel x frame) into U, s, Vt of rank K, "
            "out of core, and write them to STORE/factors/NAME. Complete factors of the same "
            "method and parameters and at least rank K are reused unless --force."
        ),
    )
    parser.add_argument("--store", required=True, help="store written by `vidsvd ingest`")
    add_svd_flags(parser, rank_required=True)
    parser.add_argument("--name", help="name of the factor set (default: METHOD-kRANK)")
    parser.add_argument("--force", action="store_true", help="recompute even if reusable factors exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_cluster_flags(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run ``decompose``; return the exit status."""
    from pipelines.steps.context import JobContext
    from pipelines.steps.decompose import decompose

    parameters = svd_parameters(args)
    with JobContext(
        cluster=cluster_options(args), progress=not args.quiet, log=None if args.quiet else say
    ) as job:
        summary = decompose(
            store=args.store, parameters=parameters, name=args.name, force=args.force, context=job
        )
    if not args.quiet and not summary.reused:
        values = ", ".join(f"{v:.4g}" for v in summary.singular_values[:5])
        say(
            f"factors {summary.name!r} (rank {summary.rank}) written in {summary.wall_time_s:.1f} s; "
            f"s = {values}{', ...' if summary.rank > 5 else ''}"
        )
    return 0
