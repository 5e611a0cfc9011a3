"""``vidsvd evaluate``: the stored masks against ground truth (CDnet 2014 metrics)."""

from __future__ import annotations

import argparse
import json

from pipelines.cli.arguments import Commands, add_truth_layout_flags, model_list
from pipelines.cli.cluster_flags import add_cluster_flags, cluster_options
from pipelines.cli.console import say

BASELINE_FRAMES = ("color", "stored")
"""What the baselines can be fed, spelled here so that --help imports no dask (a test
keeps it equal to the library's)."""

__all__ = ["add_parser"]


def add_parser(commands: Commands) -> None:
    """Add ``evaluate`` to the sub-command table."""
    parser = commands.add_parser("evaluate", help="score the masks against ground truth (CDnet 2014 metrics)")
    parser.add_argument("--store", required=True, help="store with masks (run separate first)")
    parser.add_argument("--truth", required=True, metavar="PATH", help="ground-truth folder")
    add_truth_layout_flags(parser)
    parser.add_argument("--baseline", default="", metavar="mog2,knn", help="also score OpenCV subtractors")
    parser.add_argument(
        "--baseline-frames",
        choices=BASELINE_FRAMES,
        default="color",
        help=(
            "what the baselines see: color (default; the source videos decoded again in colour at the"
            " store's rate and size, as a user would feed OpenCV) or stored (the store's frames)"
        ),
    )
    parser.add_argument(
        "--models",
        type=model_list,
        default=[],
        metavar="robust,median,svd",
        help=(
            "also score these background models side by side, each one's masks of the truth's frames"
            " made as `separate --model` makes them (robust and median are fitted and stored when missing;"
            " svd needs decompose first); the stored masks stay as they are"
        ),
    )
    parser.add_argument(
        "--shadows",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            "the models' masks with cast shadows taken out, or kept with --no-shadows (with --models;"
            " by default as the stored masks were made)"
        ),
    )
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_cluster_flags(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run ``evaluate``; return the exit status."""
    from pipelines.steps.context import JobContext
    from pipelines.steps.evaluate import BASELINES, evaluate
    from pipelines.text_tables import format_scores
    from storage.errors import InvalidParameterError

    names = [name.strip() for name in args.baseline.split(",") if name.strip()]
    unknown = sorted(set(names) - set(BASELINES))
    if unknown:
        raise InvalidParameterError(f"--baseline takes mog2 and/or knn, got {', '.join(unknown)}")
    if args.shadows is not None and not args.models:
        flag = "--shadows" if args.shadows else "--no-shadows"
        raise InvalidParameterError(
            f"{flag} makes the models' masks, and no model is scored: add --models robust,median,svd"
            " (the stored masks are scored as separate made them)"
        )
    with JobContext(
        cluster=cluster_options(args),
        progress=not (args.quiet or args.json),
        log=None if args.json else say,
    ) as job:
        results = evaluate(
            store=args.store,
            truth=args.truth,
            truth_format=args.format,
            frame_map=args.frame_map,
            baselines=names,
            baseline_frames=args.baseline_frames,
            models=args.models,
            shadows=args.shadows,
            context=job,
        )
    print(json.dumps(results, indent=2) if args.json else format_scores(results))
    return 0
