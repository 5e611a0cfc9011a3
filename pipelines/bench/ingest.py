"""Benchmarks of ingest: throughput against ffmpeg alone, and peak memory against length.

Both run the real command line in a child process, so what is measured is what a
user gets: the Python process plus its ffmpeg child.

- Throughput: for each video, ``repeats`` alternating runs of (a) ffmpeg decoding with
  exactly the filters ingest asks for, written to ``-f null``, and (b) ``vidsvd
  ingest`` into a fresh store; medians of each and their ratio, side by side.
- Memory: peak resident memory (Python + ffmpeg, measured as
  :mod:`pipelines.bench.process_peak` says) of ingesting a synthetic scene and the
  same scene ten times longer.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.bench.process_peak import run_with_peak_rss
from pipelines.synthetic import SceneSpec, write_scene
from storage.video_decoder import DecodeOptions, ffmpeg_input, ffmpeg_null_command, output_size, probe_video

__all__ = ["MemoryRow", "ThroughputRow", "measure_memory", "measure_throughput"]


@dataclass(frozen=True, kw_only=True)
class ThroughputRow:
    """Median throughput of ffmpeg alone and of ingest, for one video."""

    video: str
    frames: int
    ffmpeg_fps: float
    ingest_fps: float

    @property
    def ratio(self) -> float:
        """Ingest speed as a fraction of ffmpeg's."""
        return self.ingest_fps / self.ffmpeg_fps


@dataclass(frozen=True, kw_only=True)
class MemoryRow:
    """Peak memory of one ingest."""

    frames: int
    size: str
    peak_rss_bytes: int
    wall_time_s: float


def _ingest_argv(video: Path, store: Path, extra: Sequence[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipelines.cli",
        "ingest",
        str(video),
        "--store",
        str(store),
        "--quiet",
        *extra,
    ]


def measure_throughput(
    videos: Sequence[Path], *, repeats: int = 5, fps: float | None = None, scale: float | None = None
) -> list[ThroughputRow]:
    """Median frames/s of ffmpeg to ``-f null`` and of ``vidsvd ingest``, alternating runs."""
    rows = []
    extra = [*(["--fps", str(fps)] if fps else []), *(["--scale", str(scale)] if scale else [])]
    for video in videos:
        info = probe_video(video)
        width, height = output_size(info, scale=scale)
        ffmpeg_times, ingest_times = [], []
        frames = 0
        with ffmpeg_input(info) as source, tempfile.TemporaryDirectory(prefix="vidsvd-bench-") as scratch:
            options = DecodeOptions(width=width, height=height, fps=fps)
            null_argv = ffmpeg_null_command(info, options, source=source)
            store = Path(scratch) / "s.zarr"
            for _ in range(repeats):
                started = time.perf_counter()
                subprocess.run(null_argv, check=True, capture_output=True)
                ffmpeg_times.append(time.perf_counter() - started)
                shutil.rmtree(store, ignore_errors=True)
                started = time.perf_counter()
                subprocess.run(_ingest_argv(video, store, extra), check=True, capture_output=True)
                ingest_times.append(time.perf_counter() - started)
                frames = _stored_frames(store)
        rows.append(
            ThroughputRow(
                video=video.name,
                frames=frames,
                ffmpeg_fps=frames / statistics.median(ffmpeg_times),
                ingest_fps=frames / statistics.median(ingest_times),
            )
        )
    return rows


def _stored_frames(store: Path) -> int:
    from storage.video_array import open_video

    return open_video(store).n_frames


def measure_memory(
    *,
    short_frames: int = 600,
    factor: int = 10,
    width: int = 320,
    height: int = 240,
    repeats: int = 3,
    chunk_frames: int | None = None,
) -> list[MemoryRow]:
    """Peak RSS of ingesting a synthetic scene and one ``factor`` times longer (medians).

    Memory is bounded by a few chunks, so the short scene must span several chunks for
    the comparison to mean anything: with the default 32 MiB chunks (436 frames of
    320x240) 600 frames are two chunks, and the pipeline never fills.  ``chunk_frames``
    sets the chunk size of both ingests.
    """
    extra = ["--chunk-frames", str(chunk_frames)] if chunk_frames else []
    rows = []
    with tempfile.TemporaryDirectory(prefix="vidsvd-bench-") as scratch:
        for n_frames in (short_frames, short_frames * factor):
            video = Path(scratch) / f"scene{n_frames}.mp4"
            write_scene(SceneSpec(width=width, height=height, n_frames=n_frames, seed=1), video)
            peaks, times = [], []
            for _ in range(repeats):
                store = Path(scratch) / "s.zarr"
                shutil.rmtree(store, ignore_errors=True)
                elapsed, peak = run_with_peak_rss(_ingest_argv(video, store, extra))
                peaks.append(peak)
                times.append(elapsed)
            rows.append(
                MemoryRow(
                    frames=n_frames,
                    size=f"{width}x{height}",
                    peak_rss_bytes=int(statistics.median(peaks)),
                    wall_time_s=statistics.median(times),
                )
            )
    return rows


def format_throughput(rows: Sequence[ThroughputRow]) -> str:
    """A plain-text table of throughput rows."""
    lines = [f"{'video':40} {'frames':>7} {'ffmpeg fps':>11} {'ingest fps':>11} {'ratio':>6}"]
    lines += [
        f"{r.video:40} {r.frames:7d} {r.ffmpeg_fps:11.1f} {r.ingest_fps:11.1f} {r.ratio:6.2f}" for r in rows
    ]
    return "\n".join(lines)


def format_memory(rows: Sequence[MemoryRow]) -> str:
    """A plain-text table of memory rows, with the ratio of the longest to the shortest."""
    lines = [f"{'frames':>7} {'size':>9} {'peak RSS MiB':>13} {'wall s':>7}"]
    lines += [
        f"{r.frames:7d} {r.size:>9} {r.peak_rss_bytes / 2**20:13.1f} {r.wall_time_s:7.2f}" for r in rows
    ]
    lines.append(
        f"peak RSS ratio (longest / shortest): {rows[-1].peak_rss_bytes / rows[0].peak_rss_bytes:.3f}"
    )
    return "\n".join(lines)
