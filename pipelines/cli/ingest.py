"""``vidsvd ingest``: videos into a chunked, compressed Zarr store."""

from __future__ import annotations

import argparse

from pipelines.cli.arguments import Commands, frame_size, positive_float, positive_int, scale_factor
from pipelines.cli.console import say

__all__ = ["add_parser"]


def add_parser(commands: Commands) -> None:
    """Add ``ingest`` to the sub-command table."""
    parser = commands.add_parser(
        "ingest",
        help="decode videos into a chunked, compressed Zarr store",
        description=(
            "Decode one or more videos with ffmpeg (resampling, scaling and converting "
            "to gray on the way) into STORE/video, streaming, with bounded memory. "
            "Several videos are concatenated along frames."
        ),
    )
    parser.add_argument(
        "videos",
        nargs="+",
        metavar="VIDEO",
        help="video files, or folders of frames (images in natural order, 25 fps), in order",
    )
    parser.add_argument("--store", required=True, help="store path or fsspec URL (created)")
    parser.add_argument(
        "--fps", type=positive_float("--fps", "5"), help="output frame rate (default: native)"
    )
    sizing = parser.add_mutually_exclusive_group()
    sizing.add_argument(
        "--scale", type=scale_factor, help="shrink factor in (0, 1] for the first video's size"
    )
    sizing.add_argument("--size", type=frame_size, metavar="WxH", help="explicit output size, e.g. 320x240")
    parser.add_argument("--color", action="store_true", help="keep RGB (default: gray luma)")
    parser.add_argument(
        "--chunk-frames",
        type=positive_int("--chunk-frames"),
        metavar="N",
        help="frames per Zarr chunk (default: as many as fit in 32 MiB)",
    )
    parser.add_argument(
        "--zstd-level",
        type=positive_int("--zstd-level"),
        metavar="L",
        help=(
            "zstd level of the stored video, 1-19 (default 3); reads cost the same at every level,"
            " 5 stores about 15%% fewer bytes for a slower ingest (for bandwidth-bound clusters)"
        ),
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace an existing vidsvd store")
    mode.add_argument("--resume", action="store_true", help="continue an interrupted ingest")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run ``ingest``; return the exit status."""
    from pipelines.steps.context import JobContext
    from pipelines.steps.ingest import ingest

    summary = ingest(
        args.videos,
        store=args.store,
        fps=args.fps,
        scale=args.scale,
        size=args.size,
        color=args.color,
        chunk_frames=args.chunk_frames,
        zstd_level=args.zstd_level,
        overwrite=args.overwrite,
        resume=args.resume,
        context=JobContext(progress=not args.quiet, log=say),
    )
    if not args.quiet:
        frames, height, width = summary.shape[:3]
        say(
            f"stored {frames} frames of {width}x{height} in {args.store} "
            f"({summary.wall_time_s:.1f} s, {frames / max(summary.wall_time_s, 1e-9):.0f} frames/s)"
        )
    return 0
