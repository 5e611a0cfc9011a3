"""Benchmarks of decomposition at scale: out of core, linear cost, and the notebook's case.

- :func:`measure_out_of_core`: a synthetic scene (default 1280x720, 12,000 frames: M is
  44 GB as float32) is written through the real encoder, ingested and decomposed at
  rank 10 by the command line, each phase in its own process tree whose peak summed
  RSS (client, workers, ffmpeg) is sampled; then one pass over M is timed piece by
  piece (read + decompress, uint8 to float32, multiply) to say how far the whole is
  from its floor.
- :func:`measure_linear_cost`: decomposition time of the first 3,000, 6,000 and
  12,000 frames of one store.
- :func:`measure_notebook_case`: ``vidsvd decompose --rank 10`` from a store against
  ``numpy.linalg.svd`` of the same matrix in memory, side by side.
- :func:`measure_worker_scaling`: decomposition time and peak memory of one store
  with 1, 2 and 4 worker processes of the embedded cluster.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.system
import numpy as np

from cluster.options import ClusterOptions
from pipelines.bench.process_peak import run_with_peak_rss
from pipelines.decompose import SvdParameters
from pipelines.fused_svd import fused_randomized_svd
from pipelines.matrix import video_matrix
from pipelines.planning import ClusterSize, DecompositionPlan, plan_decomposition
from pipelines.steps.context import JobContext
from pipelines.steps.decompose import decompose
from pipelines.synthetic import SceneSpec, write_scene
from storage.video_array import open_video

__all__ = [
    "WorkerScaling",
    "format_worker_scaling",
    "measure_linear_cost",
    "measure_notebook_case",
    "measure_out_of_core",
    "measure_worker_scaling",
    "read_seconds",
]


@dataclass(frozen=True, kw_only=True)
class Phase:
    """Wall time and peak memory of one phase."""

    name: str
    wall_time_s: float
    peak_rss_bytes: int


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", *args]


def measure_out_of_core(
    *, workdir: Path, n_frames: int = 12_000, width: int = 1280, height: int = 720, rank: int = 10
) -> tuple[list[Phase], dict[str, float]]:
    """Write, ingest and decompose a long synthetic scene; return phases and one pass's split.

    Returns
    -------
    phases : list of Phase
        ``write scene`` (not part of the product), ``ingest``, ``decompose``.
    split : dict
        Seconds of one pass over M, threaded, by piece: ``read`` (read and
        decompress every chunk), ``convert`` (uint8 to float32 on top), ``multiply``
        (M @ Omega on top, l = 20 columns) and the ``passes`` the default method makes.
    """
    video = workdir / "scene.mp4"
    store = workdir / "scene.zarr"
    phases = []
    if not video.exists():
        started = time.perf_counter()
        write_scene(SceneSpec(width=width, height=height, n_frames=n_frames, fps=25.0, seed=3), video, crf=28)
        phases.append(Phase(name="write scene", wall_time_s=time.perf_counter() - started, peak_rss_bytes=0))
    elapsed, peak = run_with_peak_rss(
        _cli("ingest", str(video), "--store", str(store), "--overwrite", "--quiet")
    )
    phases.append(Phase(name="ingest", wall_time_s=elapsed, peak_rss_bytes=peak))
    elapsed, peak = run_with_peak_rss(
        _cli("decompose", "--store", str(store), "--rank", str(rank), "--force", "--quiet")
    )
    phases.append(Phase(name="decompose", wall_time_s=elapsed, peak_rss_bytes=peak))
    return phases, one_pass_split(store)


def one_pass_split(store: Path) -> dict[str, float]:
    """Time one pass over M piece by piece with dask's threads (no cluster)."""
    frames = open_video(store).frames
    plan = _plan(frames, threads=dask.system.CPU_COUNT)
    matrix = video_matrix(frames, frames_per_chunk=plan.frames_per_chunk)
    omega = np.random.default_rng(0).standard_normal((matrix.shape[1], 20)).astype(np.float32)
    split: dict[str, float] = {"read": read_seconds(frames)}
    started = time.perf_counter()
    matrix.map_blocks(lambda b: np.zeros((1, 1), np.float32), chunks=(1, 1)).sum().compute()
    split["convert"] = time.perf_counter() - started - split["read"]
    started = time.perf_counter()
    (matrix @ omega).compute()
    split["multiply"] = time.perf_counter() - started - split["read"] - split["convert"]
    split["passes"] = SvdParameters(rank=10, iteration="fused").passes
    return split


def read_seconds(frames: Any) -> float:
    """Seconds to read and decompress every chunk of the stored frames once, threaded."""
    started = time.perf_counter()
    touched = frames.map_blocks(lambda b: np.zeros((1,) * b.ndim, np.uint8), chunks=(1,) * frames.ndim)
    with dask.config.set(scheduler="threads"):
        touched.sum().compute()
    return time.perf_counter() - started


def measure_linear_cost(
    store: Path, *, frame_counts: Sequence[int] = (3000, 6000, 12000), rank: int = 10
) -> dict[int, float]:
    """Seconds to decompose the first N frames of a store (threaded, default parameters)."""
    frames = open_video(store).frames
    threads = dask.system.CPU_COUNT
    times = {}
    for count in frame_counts:
        # the chunks of M that `vidsvd decompose` would build on this machine
        plan = _plan(frames[:count], threads=threads)
        started = time.perf_counter()
        params = SvdParameters(rank=rank, iteration="fused")
        dask.compute(
            *fused_randomized_svd(
                frames[:count],
                params,
                frames_per_task=plan.frames_per_chunk,
                groups_per_chain=plan.groups_per_chain,
            )
        )
        times[count] = time.perf_counter() - started
    return times


def measure_notebook_case(video: Path, *, repeats: int = 3, numpy_repeats: int = 2) -> dict[str, float]:
    """``vidsvd decompose --rank 10`` from a store against numpy's full SVD in memory.

    The store is the notebook's matrix: the video ingested with ``--fps 60 --scale
    0.5`` (19,200 pixels by about 6,800 frames).  Medians of ``repeats`` runs of the
    command (which includes starting the embedded cluster) and of ``numpy_repeats``
    runs of numpy.
    """
    with tempfile.TemporaryDirectory(prefix="vidsvd-bench-") as scratch:
        store = Path(scratch) / "nb.zarr"
        subprocess.run(
            _cli("ingest", str(video), "--store", str(store), "--fps", "60", "--scale", "0.5", "--quiet"),
            check=True,
        )
        ours = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(
                _cli("decompose", "--store", str(store), "--rank", "10", "--force", "--quiet"), check=True
            )
            ours.append(time.perf_counter() - started)
        warm = _decompose_on_a_running_cluster(store, repeats=repeats)
        matrix = np.asarray(video_matrix(open_video(store).frames).compute())
        reference = []
        for _ in range(numpy_repeats):
            started = time.perf_counter()
            np.linalg.svd(matrix, full_matrices=False)
            reference.append(time.perf_counter() - started)
    return {
        "pixels": float(matrix.shape[0]),
        "frames": float(matrix.shape[1]),
        "vidsvd_decompose_s": statistics.median(ours),
        "warm_decompose_s": statistics.median(warm),
        "numpy_svd_s": statistics.median(reference),
        "ratio": statistics.median(reference) / statistics.median(ours),
        "warm_ratio": statistics.median(reference) / statistics.median(warm),
    }


def _decompose_on_a_running_cluster(store: Path, *, repeats: int) -> list[float]:
    """Seconds of the decompose step (rank 10, forced) on an already running cluster.

    What a notebook or a service sees: the interpreter, its imports and the cluster
    are up (one job context for every call); each call reads the store, decomposes
    and writes the factors.
    """
    times = []
    with JobContext(cluster=ClusterOptions(dashboard=False), progress=False) as job:
        decompose(store=store, parameters=SvdParameters(rank=10), force=True, context=job)
        for _ in range(repeats):
            started = time.perf_counter()
            decompose(store=store, parameters=SvdParameters(rank=10), force=True, context=job)
            times.append(time.perf_counter() - started)
    return times


@dataclass(frozen=True, kw_only=True)
class WorkerScaling:
    """Decomposition of one store by an embedded cluster of ``workers`` processes."""

    workers: int
    threads_per_worker: int
    wall_time_s: float
    peak_rss_bytes: int


def measure_worker_scaling(
    store: Path, *, worker_counts: Sequence[int] = (1, 2, 4), repeats: int = 3, rank: int = 10
) -> list[WorkerScaling]:
    """Median wall time and peak memory of ``vidsvd decompose`` with each worker count.

    Each run is a fresh ``vidsvd decompose --force --workers N --threads-per-worker 1``
    process (cluster start included), the worker counts alternating within each
    repeat so that a change in the machine's load touches all of them alike.  Peak
    memory is the summed RSS of the command and its worker processes.
    """
    times: dict[int, list[float]] = {n: [] for n in worker_counts}
    peaks: dict[int, list[int]] = {n: [] for n in worker_counts}
    for _ in range(repeats):
        for n in worker_counts:
            argv = _cli(
                "decompose", "--store", str(store), "--rank", str(rank), "--force", "--quiet",
                "--workers", str(n), "--threads-per-worker", "1",
            )  # fmt: skip
            elapsed, peak = run_with_peak_rss(argv)
            times[n].append(elapsed)
            peaks[n].append(peak)
    return [
        WorkerScaling(
            workers=n,
            threads_per_worker=1,
            wall_time_s=statistics.median(times[n]),
            peak_rss_bytes=int(statistics.median(peaks[n])),
        )
        for n in worker_counts
    ]


def format_worker_scaling(rows: Sequence[WorkerScaling]) -> str:
    """The scaling table as plain text, with the speed-up against the first row."""
    lines = [f"{'workers':>7} {'threads':>7} {'wall s':>8} {'speed-up':>8} {'peak RSS GiB':>13}"]
    base = rows[0].wall_time_s if rows else 0.0
    lines += [
        f"{r.workers:7d} {r.threads_per_worker:7d} {r.wall_time_s:8.1f} {base / r.wall_time_s:8.2f}"
        f" {r.peak_rss_bytes / 2**30:13.2f}"
        for r in rows
    ]
    return "\n".join(lines)


def format_phases(phases: Sequence[Phase], split: dict[str, float]) -> str:
    """Phases and the one-pass split as plain text."""
    lines = [f"{'phase':12} {'wall s':>8} {'peak RSS GiB':>13}"]
    lines += [f"{p.name:12} {p.wall_time_s:8.1f} {p.peak_rss_bytes / 2**30:13.2f}" for p in phases]
    lines.append(
        "one pass over M: read+decompress {read:.1f} s, convert {convert:.1f} s, multiply {multiply:.1f} s; "
        "the default method makes {passes:.0f} passes".format(**split)
    )
    return "\n".join(lines)


def _plan(frames: Any, *, threads: int) -> DecompositionPlan:
    """The randomized decomposition ``vidsvd decompose`` plans on ``threads`` threads.

    On one worker without a memory limit: chunks of M and chains of partials,
    nothing kept in memory.
    """
    frame_pixels = int(np.prod(frames.shape[1:], dtype=np.int64))
    return plan_decomposition(
        method="randomized",
        video_chunk_frames=int(frames.chunks[0][0]),
        n_video_chunks=len(frames.chunks[0]),
        frame_pixels=frame_pixels,
        matrix_chunk_bytes=int(frames.chunks[0][0]) * frame_pixels * 4,
        matrix_bytes=int(frames.shape[0]) * frame_pixels * 4,
        cluster=ClusterSize(n_workers=1, threads=threads, worker_memory_bytes=0),
    )
