"""``vidsvd separate``: background, foreground and masks of every frame, with images and videos."""

from __future__ import annotations

import argparse

from pipelines.cli.arguments import (
    Commands,
    add_model_flag,
    add_separation_output_flags,
    positive_int,
    threshold_value,
)
from pipelines.cli.cluster_flags import add_cluster_flags, cluster_options
from pipelines.cli.console import say
from pipelines.cli.early_workers import early_workers

__all__ = ["add_parser"]


def add_parser(commands: Commands) -> None:
    """Add ``separate`` to the sub-command table."""
    parser = commands.add_parser(
        "separate",
        help="background, foreground and masks of every frame, with images and videos",
        description=(
            "For each chunk of frames: background = U_k diag(s_k) Vt_k, foreground = M - background, "
            "mask = |foreground| > threshold (then a 3x3 median clean-up). Writes STORE/foreground "
            "and STORE/masks, and background.png, foreground.mp4, compare.mp4 and sample frames in DIR."
        ),
    )
    parser.add_argument("--store", required=True, help="store with a video and its factors")
    parser.add_argument("--factors", metavar="NAME", help="factor set (default: the highest rank)")
    parser.add_argument(
        "--rank",
        type=positive_int("--rank"),
        metavar="K",
        help="components (default: one per source video, as the notebook's rank-1 background)",
    )
    parser.add_argument(
        "--threshold",
        type=threshold_value,
        default=None,
        metavar="auto|T",
        help=(
            "mask threshold in grey levels (default auto: half of Otsu's split, at least 3 robust sigmas,"
            " raised per pixel where the video varies; a number is used for every pixel)"
        ),
    )
    add_model_flag(parser)
    add_separation_output_flags(parser)
    parser.add_argument(
        "--out", default="vidsvd-out", metavar="DIR", help="output folder (default vidsvd-out)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_cluster_flags(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run ``separate``; return the exit status."""
    from pipelines.steps.context import JobContext

    with (
        JobContext(
            cluster=cluster_options(args), progress=not args.quiet, log=None if args.quiet else say
        ) as job,
        early_workers(job, args.store, writing_step="separate"),
    ):
        from pipelines.steps.separate import separate

        summary = separate(
            store=args.store,
            out=args.out,
            factors=args.factors,
            rank=args.rank,
            threshold=args.threshold,
            model=args.model,
            plate_window_s=args.plate_window_s,
            keep_foreground=args.foreground,
            masks_video=args.masks_video,
            make_videos=args.make_videos,
            shadows=args.shadows,
            context=job,
        )
    if not args.quiet:
        say(f"separated with {summary.factors!r} rank {summary.rank} in {summary.wall_time_s:.1f} s")
    return 0
