"""``vidsvd apply``: new footage of the same camera separated with persisted factors."""

from __future__ import annotations

import argparse

from pipelines.cli.arguments import Commands, positive_int, threshold_value
from pipelines.cli.console import say

__all__ = ["add_parser"]


def add_parser(commands: Commands) -> None:
    """Add ``apply`` to the sub-command table."""
    parser = commands.add_parser(
        "apply", help="separate new footage of the same camera with persisted factors (no decomposition)"
    )
    parser.add_argument(
        "video", metavar="VIDEO", help="new footage from the same camera (a video file or a folder of frames)"
    )
    parser.add_argument("--store", required=True, help="store holding the factors")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--factors", metavar="NAME", help="factor set (default: the highest rank)")
    parser.add_argument("--rank", type=positive_int("--rank"), metavar="K", help="background components")
    parser.add_argument(
        "--threshold",
        type=threshold_value,
        default=None,
        metavar="auto|T",
        help="mask threshold in grey levels (default: the one separate stored, else auto)",
    )
    parser.add_argument(
        "--masks-video",
        action="store_true",
        help="also write masks.mp4: the masks as a video, white foreground on black",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run ``apply``; return the exit status."""
    from pipelines.steps.apply import apply
    from pipelines.steps.context import JobContext

    summary = apply(
        store=args.store,
        video=args.video,
        out=args.out,
        factors=args.factors,
        rank=args.rank,
        threshold=args.threshold,
        masks_video=args.masks_video,
        context=JobContext(progress=not args.quiet, log=None if args.quiet else say),
    )
    if not args.quiet:
        say(f"wrote {', '.join(summary.outputs)} in {args.out} ({summary.wall_time_s:.1f} s)")
    return 0
