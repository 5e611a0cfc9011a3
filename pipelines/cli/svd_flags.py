"""The SVD flags of ``decompose`` and ``run``, and the SvdParameters they make."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Final

from pipelines.cli.arguments import non_negative_int, positive_int

if TYPE_CHECKING:
    from pipelines.decompose import SvdParameters

__all__ = [
    "DEFAULT_OVERSAMPLE",
    "DEFAULT_POWER_ITERS",
    "DEFAULT_RUN_RANK",
    "add_svd_flags",
    "requested_method",
    "svd_parameters",
]

DEFAULT_POWER_ITERS: Final = 2
"""Equal to :data:`pipelines.decompose.DEFAULT_POWER_ITERS` (a test keeps them equal),
spelled here so that ``--help`` does not import dask."""

DEFAULT_OVERSAMPLE: Final = 40
"""Equal to :data:`pipelines.decompose.DEFAULT_OVERSAMPLE` (likewise)."""

DEFAULT_RUN_RANK: Final = 10
"""``run``'s rank when ``--rank`` is not given, lowered to the frames of a shorter video."""


def add_svd_flags(parser: argparse.ArgumentParser, *, rank_required: bool) -> None:
    """Add ``--rank``, ``--method``, ``--power-iters``, ``--oversample``, ``--seed`` and ``--iteration``."""
    parser.add_argument(
        "--rank",
        required=rank_required,
        type=positive_int("--rank"),
        metavar="K",
        help="components to compute"
        + ("" if rank_required else f" (default {DEFAULT_RUN_RANK}, or the frames of a shorter video)"),
    )
    parser.add_argument(
        "--method",
        choices=("auto", "randomized", "exact"),
        default="auto",
        help=(
            "exact SVD (from the frames' Gram matrix for up to 8192 frames held in memory, "
            "tall-and-skinny TSQR otherwise), randomized SVD, or auto (default): exact where "
            "its Gram matrix costs fewer flops than the randomized method (short videos), "
            "randomized otherwise or when a randomized flag is given"
        ),
    )
    parser.add_argument(
        "--power-iters",
        type=non_negative_int("--power-iters"),
        metavar="Q",
        help=f"randomized: power iterations (default {DEFAULT_POWER_ITERS})",
    )
    parser.add_argument(
        "--oversample",
        type=non_negative_int("--oversample"),
        metavar="P",
        help=f"randomized: extra columns of the sketch (default {DEFAULT_OVERSAMPLE})",
    )
    parser.add_argument("--seed", type=non_negative_int("--seed"), help="randomized: random seed (default 0)")
    parser.add_argument(
        "--iteration",
        choices=("auto", "fused", "qr"),
        default="auto",
        help=(
            "randomized: fused (one read of the video per power iteration, Q+2 reads), qr "
            "(dask's QR iterator on M, 2Q+2 reads) or auto (default: fused unless M fits in memory)"
        ),
    )


def requested_method(args: argparse.Namespace) -> str:
    """``--method``, where ``auto`` with a flag of the randomized method means ``randomized``."""
    randomized_flags = (args.power_iters, args.oversample, args.seed)
    if args.method == "auto" and (
        any(flag is not None for flag in randomized_flags) or args.iteration != "auto"
    ):
        return "randomized"
    return str(args.method)


def svd_parameters(args: argparse.Namespace) -> SvdParameters:
    """The :class:`pipelines.decompose.SvdParameters` of the parsed flags."""
    from pipelines.decompose import SvdParameters

    return SvdParameters(
        method=requested_method(args),  # type: ignore[arg-type]  # argparse's choices
        rank=DEFAULT_RUN_RANK if args.rank is None else args.rank,
        power_iters=DEFAULT_POWER_ITERS if args.power_iters is None else args.power_iters,
        oversample=DEFAULT_OVERSAMPLE if args.oversample is None else args.oversample,
        seed=0 if args.seed is None else args.seed,
        iteration=args.iteration,
    )
