"""The ``vidsvd`` command line: a thin layer over :mod:`pipelines.run`.

Exit status: 0 success, 1 a problem with inputs or stores (one line on stderr),
2 a usage error, 130 interrupted.  Tracebacks are shown only for bugs, or for every
error with ``VIDSVD_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cluster.batch import SYSTEMS, batch_options
from cluster.client import ClusterOptions
from cluster.errors import ClusterError
from pipelines import run
from pipelines.cli_arguments import (
    OneLineParser,
    frame_size,
    non_negative_int,
    positive_float,
    positive_int,
    positive_int_list,
    rank_list,
    scale_factor,
)
from pipelines.decompose import DEFAULT_OVERSAMPLE, DEFAULT_POWER_ITERS, SvdParameters
from storage.errors import InvalidParameterError, VidsvdError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _say(message: str) -> None:
    sys.stderr.write(f"vidsvd: {message}\n")


def _add_ingest(commands: argparse._SubParsersAction[OneLineParser]) -> None:
    parser = commands.add_parser(
        "ingest",
        help="decode videos into a chunked, compressed Zarr store",
        description=(
            "Decode one or more videos with ffmpeg (resampling, scaling and converting "
            "to gray on the way) into STORE/video, streaming, with bounded memory. "
            "Several videos are concatenated along frames."
        ),
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files, in order")
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
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace an existing vidsvd store")
    mode.add_argument("--resume", action="store_true", help="continue an interrupted ingest")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=_ingest)


def _ingest(args: argparse.Namespace) -> int:
    summary = run.ingest(
        args.videos,
        store=args.store,
        fps=args.fps,
        scale=args.scale,
        size=args.size,
        color=args.color,
        chunk_frames=args.chunk_frames,
        overwrite=args.overwrite,
        resume=args.resume,
        progress=not args.quiet,
        log=_say,
    )
    if not args.quiet:
        frames, height, width = summary.shape[:3]
        _say(
            f"stored {frames} frames of {width}x{height} in {args.store} "
            f"({summary.wall_time_s:.1f} s, {frames / max(summary.wall_time_s, 1e-9):.0f} frames/s)"
        )
    return 0


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
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
    group.add_argument("--tls-ca-file", metavar="PEM", help="CA certificate of a TLS scheduler")
    group.add_argument("--tls-cert", metavar="PEM", help="client certificate for a TLS scheduler")
    group.add_argument("--tls-key", metavar="PEM", help="client private key for a TLS scheduler")
    batch = parser.add_argument_group(
        "batch system (pip install 'vidsvd[hpc]'; what is not given comes from dask's jobqueue config)"
    )
    batch.add_argument(
        "--cluster",
        choices=sorted(SYSTEMS),
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


def _cluster_options(args: argparse.Namespace) -> ClusterOptions:
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
    )
    options.validate()
    return options


def _add_decompose(commands: argparse._SubParsersAction[OneLineParser]) -> None:
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
    _add_svd_options(parser, rank_required=True)
    parser.add_argument("--name", help="name of the factor set (default: METHOD-kRANK)")
    parser.add_argument("--force", action="store_true", help="recompute even if reusable factors exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_cluster_options(parser)
    parser.set_defaults(handler=_decompose)


def _decompose(args: argparse.Namespace) -> int:
    parameters = _svd_parameters(args)
    summary = run.decompose(
        store=args.store,
        parameters=parameters,
        name=args.name,
        force=args.force,
        cluster=_cluster_options(args),
        progress=not args.quiet,
        log=None if args.quiet else _say,
    )
    if not args.quiet and not summary.reused:
        values = ", ".join(f"{v:.4g}" for v in summary.singular_values[:5])
        _say(
            f"factors {summary.name!r} (rank {summary.rank}) written in {summary.wall_time_s:.1f} s; "
            f"s = {values}{', ...' if summary.rank > 5 else ''}"
        )
    return 0


def threshold_value(text: str) -> float | None:
    """Parse ``--threshold``: ``auto`` or a positive number of grey levels."""
    if text == "auto":
        return None
    return positive_float("--threshold", "auto or 25")(text)


def _add_separate(commands: argparse._SubParsersAction[OneLineParser]) -> None:
    parser = commands.add_parser(
        "separate",
        help="background, foreground and masks of every frame, with images and videos",
        description=(
            "For each chunk of frames: background = U_k diag(s_k) Vt_k, foreground = M - background, "
            "mask = |foreground| > threshold (then a 3x3 median clean-up). Writes STORE/foreground "
            "and STORE/masks, and background.png, foreground.mp4, compare.mp4 and sample frames in DIR."
        ),
    )
    parser.add_argument("--store", required=True)
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
        help="mask threshold in grey levels (default auto: max of Otsu and 3 robust sigmas)",
    )
    parser.add_argument(
        "--out", default="vidsvd-out", metavar="DIR", help="output folder (default vidsvd-out)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_cluster_options(parser)
    parser.set_defaults(handler=_separate)


def _separate(args: argparse.Namespace) -> int:
    summary = run.separate(
        store=args.store,
        out=args.out,
        factors=args.factors,
        rank=args.rank,
        threshold=args.threshold,
        cluster=_cluster_options(args),
        progress=not args.quiet,
        log=None if args.quiet else _say,
    )
    if not args.quiet:
        _say(f"separated with {summary.factors!r} rank {summary.rank} in {summary.wall_time_s:.1f} s")
    return 0


def _add_report(commands: argparse._SubParsersAction[OneLineParser]) -> None:
    parser = commands.add_parser(
        "report",
        help="compression and reconstruction error per rank, spectrum, components (JSON + HTML)",
    )
    parser.add_argument("--store", required=True)
    parser.add_argument("--factors", metavar="NAME", help="factor set (default: the highest rank)")
    parser.add_argument("--ranks", type=rank_list, metavar="1,2,5,10", help="ranks to measure")
    parser.add_argument(
        "--out", default="vidsvd-out", metavar="DIR", help="output folder (default vidsvd-out)"
    )
    parser.add_argument("--json", action="store_true", help="print report.json to stdout instead of a table")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_cluster_options(parser)
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    result = run.report(
        store=args.store,
        out=args.out,
        ranks=args.ranks,
        factors=args.factors,
        cluster=_cluster_options(args),
        progress=not args.quiet,
        log=None if args.quiet else _say,
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(run.format_rank_table(result["ranks"]))
    return 0


def _add_evaluate(commands: argparse._SubParsersAction[OneLineParser]) -> None:
    parser = commands.add_parser("evaluate", help="score the masks against ground truth (CDnet 2014 metrics)")
    parser.add_argument("--store", required=True)
    parser.add_argument("--truth", required=True, metavar="PATH", help="ground-truth folder")
    parser.add_argument("--format", choices=("cdnet", "masks"), default="masks", help="truth layout")
    parser.add_argument("--frame-map", metavar="CSV", help="masks format: CSV mapping each mask to its frame")
    parser.add_argument("--baseline", default="", metavar="mog2,knn", help="also score OpenCV subtractors")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    names = [name.strip() for name in args.baseline.split(",") if name.strip()]
    unknown = sorted(set(names) - {"mog2", "knn"})
    if unknown:
        raise InvalidParameterError(f"--baseline takes mog2 and/or knn, got {', '.join(unknown)}")
    results = run.evaluate(
        store=args.store,
        truth=args.truth,
        truth_format=args.format,
        frame_map=args.frame_map,
        baselines=names,
        log=None if args.json else _say,
    )
    print(json.dumps(results, indent=2) if args.json else run.format_scores(results))
    return 0


def _add_apply(commands: argparse._SubParsersAction[OneLineParser]) -> None:
    parser = commands.add_parser(
        "apply", help="separate new footage of the same camera with persisted factors (no decomposition)"
    )
    parser.add_argument("video", metavar="VIDEO", help="new footage from the same camera")
    parser.add_argument("--store", required=True, help="store holding the factors")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--factors", metavar="NAME", help="factor set (default: the highest rank)")
    parser.add_argument("--rank", type=positive_int("--rank"), metavar="K")
    parser.add_argument("--threshold", type=threshold_value, default=None, metavar="auto|T")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_apply)


def _apply(args: argparse.Namespace) -> int:
    summary = run.apply(
        store=args.store,
        video=args.video,
        out=args.out,
        factors=args.factors,
        rank=args.rank,
        threshold=args.threshold,
        progress=not args.quiet,
        log=None if args.quiet else _say,
    )
    if not args.quiet:
        _say(f"wrote {', '.join(summary.outputs)} in {args.out} ({summary.wall_time_s:.1f} s)")
    return 0


def _add_svd_options(parser: argparse.ArgumentParser, *, rank_required: bool) -> None:
    parser.add_argument(
        "--rank",
        required=rank_required,
        default=None if rank_required else 10,
        type=positive_int("--rank"),
        metavar="K",
        help="components to compute" + ("" if rank_required else " (10)"),
    )
    parser.add_argument("--method", choices=("randomized", "exact"), default="randomized")
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
    parser.add_argument("--seed", type=int, default=0, help="randomized: random seed (default 0)")


def _svd_parameters(args: argparse.Namespace) -> SvdParameters:
    return SvdParameters(
        method=args.method,
        rank=args.rank,
        power_iters=DEFAULT_POWER_ITERS if args.power_iters is None else args.power_iters,
        oversample=DEFAULT_OVERSAMPLE if args.oversample is None else args.oversample,
        seed=args.seed,
    )


def _add_run(commands: argparse._SubParsersAction[OneLineParser]) -> None:
    parser = commands.add_parser(
        "run",
        help="the main job: ingest, decompose, separate, report (each step skipped when done)",
        description=(
            "Ingest VIDEOs into DIR/store.zarr (or --store), decompose, separate and report into DIR. "
            "Rerunning continues an interrupted job: complete steps are skipped."
        ),
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO")
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
    _add_svd_options(parser, rank_required=False)
    parser.add_argument(
        "--separate-rank",
        type=positive_int("--separate-rank"),
        metavar="K",
        help="background components (default: one per video)",
    )
    parser.add_argument("--threshold", type=threshold_value, default=None, metavar="auto|T")
    parser.add_argument("--ranks", type=rank_list, metavar="1,2,5,10", help="ranks in the report")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_cluster_options(parser)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    summary = run.run_all(
        args.videos,
        out=args.out,
        parameters=_svd_parameters(args),
        store=args.store,
        fps=args.fps,
        scale=args.scale,
        size=args.size,
        separate_rank=args.separate_rank,
        threshold=args.threshold,
        report_ranks=args.ranks,
        cluster=_cluster_options(args),
        progress=not args.quiet,
        log=None if args.quiet else _say,
    )
    if not args.quiet:
        steps = ", ".join(f"{step}: {what}" for step, what in summary.steps.items())
        _say(f"{steps}; open {Path(summary.out) / 'report.html'} and {Path(summary.out) / 'compare.mp4'}")
    return 0


def _add_demo(commands: argparse._SubParsersAction[OneLineParser]) -> None:
    parser = commands.add_parser(
        "demo", help="a synthetic scene with ground truth, the main job on it, and its scores"
    )
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_cluster_options(parser)
    parser.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    scores = run.demo(
        out=args.out,
        cluster=_cluster_options(args),
        progress=not args.quiet,
        log=None if args.quiet else _say,
    )
    print(run.format_scores(scores))
    if not args.quiet:
        out = Path(args.out)
        _say(f"look at {out / 'report.html'}, {out / 'compare.mp4'} and {out / 'background.png'}")
    return 0


def _add_bench(commands: argparse._SubParsersAction[OneLineParser]) -> None:
    parser = commands.add_parser("bench", help="benchmarks (ingest throughput and memory, SVD timings)")
    targets = parser.add_subparsers(dest="target", metavar="TARGET", parser_class=OneLineParser)
    targets.required = True
    ingest = targets.add_parser(
        "ingest",
        help="ingest frames/s against ffmpeg alone, and peak memory against video length",
    )
    ingest.add_argument("videos", nargs="*", metavar="VIDEO", help="videos for the throughput comparison")
    ingest.add_argument("--repeats", type=positive_int("--repeats"), default=5, help="runs per measurement")
    ingest.add_argument("--memory", action="store_true", help="also measure peak RSS, 1x and 10x long scene")
    ingest.add_argument("--memory-frames", type=positive_int("--memory-frames"), default=600)
    ingest.add_argument(
        "--memory-chunk-frames",
        type=positive_int("--memory-chunk-frames"),
        default=None,
        help="chunk size of the memory runs (the short run must span several chunks)",
    )
    ingest.set_defaults(handler=_bench_ingest)
    scale = targets.add_parser(
        "scale", help="out of core: write, ingest and decompose a long synthetic scene, with peak memory"
    )
    scale.add_argument("--workdir", required=True, metavar="DIR", help="where the scene and store go")
    scale.add_argument("--frames", type=positive_int("--frames"), default=12_000)
    scale.add_argument("--size", type=frame_size, default=(1280, 720), metavar="WxH")
    scale.add_argument("--linear", action="store_true", help="also time 1/4, 1/2 and all of the frames")
    scale.set_defaults(handler=_bench_scale)
    notebook = targets.add_parser(
        "notebook", help="the notebook's case: vidsvd decompose against numpy's full SVD in memory"
    )
    notebook.add_argument("video", metavar="VIDEO", help="the notebook's video (Video_003.avi)")
    notebook.add_argument("--repeats", type=positive_int("--repeats"), default=3)
    notebook.add_argument("--numpy-repeats", type=positive_int("--numpy-repeats"), default=2)
    notebook.set_defaults(handler=_bench_notebook)
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
    workers.add_argument("--repeats", type=positive_int("--repeats"), default=3)
    workers.set_defaults(handler=_bench_workers)
    svd = targets.add_parser(
        "svd", help="the notebook's timing table: numpy's full SVD against dask's randomized and TSQR"
    )
    svd.add_argument("--repeats", type=positive_int("--repeats"), default=3)
    svd.add_argument(
        "--max-numpy-seconds",
        type=positive_float("--max-numpy-seconds", "60"),
        default=60.0,
        help="estimate numpy's time from the smaller sizes instead of running it above this",
    )
    svd.set_defaults(handler=_bench_svd)


def _bench_ingest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipelines import bench_ingest

    if not args.videos and not args.memory:
        raise InvalidParameterError("give videos to time, or --memory (or both)")
    for video in args.videos:
        run.probe(video)  # refuse bad paths before minutes of benchmarking
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


def _bench_scale(args: argparse.Namespace) -> int:
    from pipelines import bench_scale

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


def _bench_notebook(args: argparse.Namespace) -> int:
    from pipelines import bench_scale

    run.probe(args.video)
    result = bench_scale.measure_notebook_case(
        Path(args.video), repeats=args.repeats, numpy_repeats=args.numpy_repeats
    )
    print(
        f"M {result['pixels']:.0f} x {result['frames']:.0f}, medians of {args.repeats} runs "
        f"({args.numpy_repeats} for numpy):\n"
        f"  numpy.linalg.svd in memory            {result['numpy_svd_s']:7.2f} s\n"
        f"  vidsvd decompose --rank 10 (command)  {result['vidsvd_decompose_s']:7.2f} s"
        f"  {result['ratio']:5.0f}x  (interpreter, imports and embedded cluster start included)\n"
        f"  run.decompose on a running cluster    {result['warm_decompose_s']:7.2f} s"
        f"  {result['warm_ratio']:5.0f}x  (store read, SVD, factors written)"
    )
    return 0


def _bench_workers(args: argparse.Namespace) -> int:
    from pipelines import bench_scale
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


def _bench_svd(args: argparse.Namespace) -> int:
    from pipelines import bench_svd

    rows = bench_svd.time_svds(
        bench_svd.NOTEBOOK_SIZES, repeats=args.repeats, max_numpy_seconds=args.max_numpy_seconds
    )
    print(f"rank-10 SVDs, medians of {args.repeats} runs; (est.): estimated from smaller sizes")
    print(bench_svd.format_table(rows))
    return 0


def build_parser() -> OneLineParser:
    """Return the parser of every ``vidsvd`` subcommand."""
    parser = OneLineParser(
        prog="vidsvd",
        description="Separate the still background of long videos from what moves through them.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    commands.required = True
    _add_ingest(commands)
    _add_decompose(commands)
    _add_separate(commands)
    _add_report(commands)
    _add_evaluate(commands)
    _add_apply(commands)
    _add_run(commands)
    _add_demo(commands)
    _add_bench(commands)
    return parser


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    _say(f"warning: {message}")


_INTERRUPTED = {
    "": "interrupted; complete outputs are intact, rerun to finish",
    # a plain rerun of ingest refuses the incomplete store: say what continues it
    "ingest": "interrupted; the frames stored so far are kept, rerun with --resume to finish",
}
"""The line printed on Ctrl-C, by command ("" for every other)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    debug = os.environ.get("VIDSVD_DEBUG") == "1"
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return handler(args)
        except InvalidParameterError as exc:
            if debug:
                raise
            _say(f"error: {exc}")
            return 2
        except (VidsvdError, ClusterError) as exc:
            if debug:
                raise
            _say(f"error: {exc}")
            return 2 if isinstance(exc, ValueError) and not isinstance(exc, VidsvdError) else 1
        except KeyboardInterrupt:
            _say(_INTERRUPTED.get(args.command, _INTERRUPTED[""]))
            return 130


if __name__ == "__main__":
    raise SystemExit(main())
