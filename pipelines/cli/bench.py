"""``vidsvd bench``: the benchmarks, side by side with what a user would pick instead."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Final

from pipelines.cli.arguments import (
    Commands,
    OneLineParser,
    frame_size,
    positive_float,
    positive_int,
    positive_int_list,
)

__all__ = ["COMMAND", "add_parser"]

COMMAND: Final = "bench"
"""The command's name: the one command whose process keeps the user's memory settings."""


def add_parser(commands: Commands) -> None:
    """Add ``bench`` and its targets to the sub-command table."""
    parser = commands.add_parser(COMMAND, help="benchmarks (ingest throughput and memory, SVD timings)")
    targets = parser.add_subparsers(dest="target", metavar="TARGET", parser_class=OneLineParser)
    targets.required = True
    ingest = targets.add_parser(
        "ingest",
        help="ingest frames/s against ffmpeg alone, and peak memory against video length",
    )
    ingest.add_argument("videos", nargs="*", metavar="VIDEO", help="videos for the throughput comparison")
    ingest.add_argument("--repeats", type=positive_int("--repeats"), default=5, help="runs per measurement")
    ingest.add_argument("--memory", action="store_true", help="also measure peak RSS, 1x and 10x long scene")
    ingest.add_argument(
        "--memory-frames",
        type=positive_int("--memory-frames"),
        default=600,
        help="frames of the short memory run (600)",
    )
    ingest.add_argument(
        "--memory-chunk-frames",
        type=positive_int("--memory-chunk-frames"),
        default=None,
        help="chunk size of the memory runs (the short run must span several chunks)",
    )
    ingest.set_defaults(handler=_ingest)
    scale = targets.add_parser(
        "scale", help="out of core: write, ingest and decompose a long synthetic scene, with peak memory"
    )
    scale.add_argument("--workdir", required=True, metavar="DIR", help="where the scene and store go")
    scale.add_argument("--frames", type=positive_int("--frames"), default=12_000, help="frames (12000)")
    scale.add_argument("--size", type=frame_size, default=(1280, 720), metavar="WxH", help="frame size")
    scale.add_argument("--linear", action="store_true", help="also time 1/4, 1/2 and all of the frames")
    scale.set_defaults(handler=_scale)
    notebook = targets.add_parser(
        "notebook", help="the notebook's case: vidsvd decompose against numpy's full SVD in memory"
    )
    notebook.add_argument("video", metavar="VIDEO", help="the notebook's video (Video_003.avi)")
    notebook.add_argument("--repeats", type=positive_int("--repeats"), default=3, help="runs (3)")
    notebook.add_argument(
        "--numpy-repeats", type=positive_int("--numpy-repeats"), default=2, help="numpy runs (2)"
    )
    notebook.set_defaults(handler=_notebook)
    workers = targets.add_parser(
        "workers", help="decomposition time of one store with 1, 2 and 4 worker processes"
    )
    workers.add_argument("--store", required=True, help="store written by `vidsvd ingest`")
    workers.add_argument(
        "--workers",
        type=positive_int_list("--workers", "1,2,4"),
        default=[1, 2, 4],
        metavar="N,N,...",
        help="worker counts (default 1,2,4)",
    )
    workers.add_argument("--repeats", type=positive_int("--repeats"), default=3, help="runs (3)")
    workers.set_defaults(handler=_workers)
    side = targets.add_parser(
        "decompose",
        help="vidsvd decompose against naive dask and scikit-learn on one store, with the floors",
    )
    side.add_argument("--store", required=True, help="store written by `vidsvd ingest`")
    side.add_argument("--rounds", type=positive_int("--rounds"), default=2, help="alternating rounds (2)")
    side.set_defaults(handler=_side_by_side)
    run = targets.add_parser(
        "run",
        help="the whole vidsvd run (with and without videos) against OpenCV's MOG2 and KNN over one file",
    )
    run.add_argument("video", metavar="VIDEO", help="a video file ffmpeg and OpenCV can read")
    run.add_argument("--rounds", type=positive_int("--rounds"), default=3, help="alternating rounds (3)")
    run.set_defaults(handler=_run_vs_opencv)
    svd = targets.add_parser(
        "svd", help="the notebook's timing table: numpy's full SVD against dask's randomized and TSQR"
    )
    svd.add_argument("--repeats", type=positive_int("--repeats"), default=3, help="runs (3)")
    svd.add_argument(
        "--max-numpy-seconds",
        type=positive_float("--max-numpy-seconds", "60"),
        default=60.0,
        help="estimate numpy's time from the smaller sizes instead of running it above this (60)",
    )
    svd.add_argument(
        "--max-exact-seconds",
        type=positive_float("--max-exact-seconds", "60"),
        default=60.0,
        help="estimate the exact SVD's time instead of running it above this (60)",
    )
    svd.set_defaults(handler=_svd)


def _ingest(args: argparse.Namespace) -> int:
    from pipelines.bench import ingest as bench_ingest
    from storage.errors import InvalidParameterError
    from storage.video_probe import probe_video

    if not args.videos and not args.memory:
        raise InvalidParameterError("give videos to time, or --memory (or both)")
    for video in args.videos:
        probe_video(video)  # refuse bad paths before minutes of benchmarking
    if args.videos:
        rows = bench_ingest.measure_throughput([Path(v) for v in args.videos], repeats=args.repeats)
        print(f"ingest throughput, medians of {args.repeats} alternating runs")
        print(bench_ingest.format_throughput(rows))
    if args.memory:
        memory_rows = bench_ingest.measure_memory(
            short_frames=args.memory_frames, repeats=args.repeats, chunk_frames=args.memory_chunk_frames
        )
        print(f"ingest peak memory, medians of {args.repeats} runs")
        print(bench_ingest.format_memory(memory_rows))
    return 0


def _side_by_side(args: argparse.Namespace) -> int:
    from pipelines.bench import side_by_side
    from storage.video_array import open_video

    open_video(args.store)  # a missing or damaged store is refused before any run
    contenders, floors = side_by_side.compare_decompositions(Path(args.store), rounds=args.rounds)
    print(side_by_side.format_comparison(contenders, floors))
    note = side_by_side.startup_note()
    if note is not None:
        print(note)
    return 0


def _run_vs_opencv(args: argparse.Namespace) -> int:
    from pipelines.bench import run_vs_opencv
    from storage.video_probe import probe_video

    video = Path(args.video)
    probe_video(video)  # refuse a bad path before minutes of benchmarking
    contenders = run_vs_opencv.compare_runs(video, rounds=args.rounds)
    print(run_vs_opencv.format_run_comparison(contenders, video=video))
    return 0


def _scale(args: argparse.Namespace) -> int:
    from pipelines.bench import scale as bench_scale

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    width, height = args.size
    phases, split = bench_scale.measure_out_of_core(
        workdir=workdir, n_frames=args.frames, width=width, height=height
    )
    print(f"out of core: {args.frames} frames of {width}x{height}")
    print(bench_scale.format_phases(phases, split))
    if args.linear:
        counts = [args.frames // 4, args.frames // 2, args.frames]
        times = bench_scale.measure_linear_cost(workdir / "scene.zarr", frame_counts=counts)
        print("decomposition time by frame count: " + ", ".join(f"{n}: {t:.1f} s" for n, t in times.items()))
    return 0


def _notebook(args: argparse.Namespace) -> int:
    from pipelines.bench import scale as bench_scale
    from storage.video_probe import probe_video

    probe_video(args.video)
    result = bench_scale.measure_notebook_case(
        Path(args.video), repeats=args.repeats, numpy_repeats=args.numpy_repeats
    )
    print(
        f"M {result['pixels']:.0f} x {result['frames']:.0f}, medians of {args.repeats} runs "
        f"({args.numpy_repeats} for numpy):\n"
        f"  numpy.linalg.svd in memory            {result['numpy_svd_s']:7.2f} s\n"
        f"  vidsvd decompose --rank 10 (command)  {result['vidsvd_decompose_s']:7.2f} s"
        f"  {result['ratio']:5.0f}x  (interpreter, imports and embedded cluster start included)\n"
        f"  decompose step on a running cluster   {result['warm_decompose_s']:7.2f} s"
        f"  {result['warm_ratio']:5.0f}x  (store read, SVD, factors written)"
    )
    return 0


def _workers(args: argparse.Namespace) -> int:
    from pipelines.bench import scale as bench_scale
    from storage.video_array import open_video

    video = open_video(args.store)  # refuse a missing or incomplete store before minutes of work
    rows = bench_scale.measure_worker_scaling(
        Path(args.store), worker_counts=args.workers, repeats=args.repeats
    )
    print(
        f"decompose --rank 10 of {video.n_frames} frames of {video.width}x{video.height}, "
        f"{os.cpu_count()} cores, medians of {args.repeats} runs"
    )
    print(bench_scale.format_worker_scaling(rows))
    return 0


def _svd(args: argparse.Namespace) -> int:
    from pipelines.bench import svd as bench_svd

    rows = bench_svd.time_svds(
        bench_svd.NOTEBOOK_SIZES,
        repeats=args.repeats,
        max_numpy_seconds=args.max_numpy_seconds,
        max_exact_seconds=args.max_exact_seconds,
    )
    print(f"rank-10 SVDs, medians of {args.repeats} runs; (est.): estimated from smaller sizes")
    print(bench_svd.format_table(rows))
    return 0
