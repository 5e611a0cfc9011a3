"""``vidsvd run``: the main job, ingest, decompose, separate and report, each skipped when done."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from pipelines.cli.arguments import (
    Commands,
    add_model_flag,
    add_separation_output_flags,
    add_truth_layout_flags,
    frame_size,
    positive_float,
    positive_int,
    rank_list,
    scale_factor,
    threshold_value,
)
from pipelines.cli.cluster_flags import add_cluster_flags, cluster_options
from pipelines.cli.console import say
from pipelines.cli.svd_flags import add_svd_flags, svd_parameters

__all__ = ["add_parser"]


def add_parser(commands: Commands) -> None:
    """Add ``run`` to the sub-command table."""
    parser = commands.add_parser(
        "run",
        help="the main job: ingest, decompose, separate, report (each step skipped when done)",
        description=(
            "Ingest VIDEOs into DIR/store.zarr (or --store), decompose, separate and report into DIR. "
            "Rerunning continues an interrupted job: complete steps are skipped."
        ),
    )
    parser.add_argument(
        "videos",
        nargs="+",
        metavar="VIDEO",
        help="video files, or folders of frames (images in natural order, 25 fps), in order",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (the store goes inside unless --store)"
    )
    parser.add_argument(
        "--store",
        metavar="STORE",
        help="store path or fsspec URL, e.g. s3://bucket/job.zarr (default: DIR/store.zarr)",
    )
    parser.add_argument(
        "--fps", type=positive_float("--fps", "5"), help="output frame rate (default: native)"
    )
    sizing = parser.add_mutually_exclusive_group()
    sizing.add_argument("--scale", type=scale_factor, help="shrink factor in (0, 1]")
    sizing.add_argument("--size", type=frame_size, metavar="WxH", help="explicit frame size")
    add_svd_flags(parser, rank_required=False)
    parser.add_argument(
        "--name", help="name of the SVD factor set (default: METHOD-kRANK); the separation and report use it"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="recompute the SVD even if factors of that name exist (then separate and report again)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start again: ingest into a fresh store, replacing what the store holds (factors too)",
    )
    parser.add_argument(
        "--separate-rank",
        type=positive_int("--separate-rank"),
        metavar="K",
        help="background components (default: one per video)",
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
    parser.add_argument("--ranks", type=rank_list, metavar="1,2,5,10", help="ranks in the report")
    parser.add_argument(
        "--truth",
        metavar="PATH",
        help="ground-truth folder: the report also scores the masks and each background model against it",
    )
    add_truth_layout_flags(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_cluster_flags(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the main job; return the exit status."""
    from pipelines.steps.context import JobContext
    from pipelines.steps.job import run

    with JobContext(
        cluster=cluster_options(args), progress=not args.quiet, log=None if args.quiet else say
    ) as job:
        summary = run(
            args.videos,
            out=args.out,
            parameters=svd_parameters(args),
            rank_within_frames=args.rank is None,
            store=args.store,
            fps=args.fps,
            scale=args.scale,
            size=args.size,
            separate_rank=args.separate_rank,
            threshold=args.threshold,
            report_ranks=args.ranks,
            model=args.model,
            plate_window_s=args.plate_window_s,
            keep_foreground=args.foreground,
            masks_video=args.masks_video,
            make_videos=args.make_videos,
            shadows=args.shadows,
            truth=args.truth,
            truth_format=args.format,
            frame_map=args.frame_map,
            name=args.name,
            force=args.force,
            overwrite=args.overwrite,
            context=job,
        )
    if not args.quiet:
        steps = ", ".join(f"{step}: {what}" for step, what in summary.steps.items())
        total = sum(summary.timings.values())
        shown = [Path(summary.out) / name for name in ("report.html", "compare.mp4")]
        to_open = " and ".join(shlex.quote(str(path)) for path in shown if path.exists())
        say(f"{steps}; {total:.1f} s in all; open {to_open}")
    return 0
