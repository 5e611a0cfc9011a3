"""``vidsvd decompose``: the truncated SVD of the stored video, factors persisted as Zarr."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from pipelines.cli.arguments import BACKGROUND_MODELS, Commands
from pipelines.cli.cluster_flags import add_cluster_flags, cluster_options
from pipelines.cli.console import say
from pipelines.cli.early_workers import early_workers
from pipelines.cli.svd_flags import (
    DEFAULT_OVERSAMPLE,
    DEFAULT_POWER_ITERS,
    add_svd_flags,
    requested_method,
    svd_parameters,
)

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

    with (
        JobContext(
            cluster=cluster_options(args), progress=not args.quiet, log=None if args.quiet else say
        ) as job,
        early_workers(job, args.store, writing_step="decompose", wanted=_will_compute(args)),
    ):
        from pipelines.steps.decompose import decompose

        summary = decompose(
            store=args.store, parameters=svd_parameters(args), name=args.name, force=args.force, context=job
        )
    if not args.quiet and not summary.reused:
        values = ", ".join(f"{v:.4g}" for v in summary.singular_values[:5])
        say(
            f"factors {summary.name!r} (rank {summary.rank}) written in {summary.wall_time_s:.1f} s; "
            f"s = {values}{', ...' if summary.rank > 5 else ''}"
        )
    return 0


def _will_compute(args: argparse.Namespace) -> bool:
    """True when the store surely holds no factors that answer the flags, or ``--force``.

    From the factor sets' attributes alone, without importing dask (the step then
    checks the video's fingerprint too, and computes only if nothing answers).  False
    when factors of the name asked for exist (reused, or refused without ``--force``),
    when the name is refused, or when the store cannot be read: the step decides.
    """
    from storage.errors import VidsvdError
    from storage.factor_lookup import answering_factors, list_factors
    from storage.layout import default_factors_name

    method = requested_method(args)
    methods = ("exact", "randomized") if method == "auto" else (method,)
    names = [args.name] if args.name else [default_factors_name(m, args.rank) for m in methods]
    if any(name in BACKGROUND_MODELS for name in names):
        return False  # the fitted models' names are refused by the step
    if args.force:
        return True
    try:
        if any(summary.name in names for summary in list_factors(args.store)):
            return False
        found = answering_factors(
            args.store, parameters=_Request.of(args), video_fingerprint=None, name=args.name
        )
    except VidsvdError:
        return False
    return found is None


@dataclass(frozen=True, kw_only=True)
class _Request:
    """What the flags ask for, as :class:`storage.factors.FactorParameters` (no dask import)."""

    method: str
    rank: int
    power_iters: int
    oversample: int
    seed: int

    @classmethod
    def of(cls, args: argparse.Namespace) -> _Request:
        return cls(
            method=requested_method(args),
            rank=args.rank,
            power_iters=DEFAULT_POWER_ITERS if args.power_iters is None else args.power_iters,
            oversample=DEFAULT_OVERSAMPLE if args.oversample is None else args.oversample,
            seed=0 if args.seed is None else args.seed,
        )
