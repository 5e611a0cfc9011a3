"""Composition: wires storage, cluster and the pure computations into user-level steps.

Every function here is what a notebook user calls and what the command line runs:
each reads its inputs from the store and writes its outputs there, so every step can
be rerun or resumed alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from storage.store import StoreLocation
from storage.video_decoder import SourceInfo, probe_video
from storage.video_ingest import IngestSummary, ingest_videos

__all__ = ["ingest", "probe"]


def probe(video: str | os.PathLike[str]) -> SourceInfo:
    """Read a video's header (codec, fps, size, duration); raise a clear error if it is no video."""
    return probe_video(video)


def ingest(
    videos: Sequence[str | os.PathLike[str]],
    *,
    store: StoreLocation | str | os.PathLike[str],
    fps: float | None = None,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    color: bool = False,
    chunk_frames: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> IngestSummary:
    """Decode ``videos`` into ``STORE/video``; see :func:`storage.video_ingest.ingest_videos`.

    Ingest needs no cluster: ffmpeg decodes in its own process and one writer thread
    compresses, with about four chunks in memory at once.
    """
    return ingest_videos(
        videos,
        store=store,
        fps=fps,
        scale=scale,
        size=size,
        color=color,
        chunk_frames=chunk_frames,
        overwrite=overwrite,
        resume=resume,
        progress=progress,
        log=log,
    )
