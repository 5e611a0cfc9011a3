"""The ingest step: videos into ``STORE/video``, in this process (no cluster)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from pipelines.steps.context import JobContext
from storage.store import StoreLocation
from storage.video_ingest import IngestSummary, ingest_videos

__all__ = ["ingest"]


def ingest(
    videos: Sequence[str | os.PathLike[str]],
    *,
    store: StoreLocation | str | os.PathLike[str],
    fps: float | None = None,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    color: bool = False,
    chunk_frames: int | None = None,
    zstd_level: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    context: JobContext | None = None,
) -> IngestSummary:
    """Decode ``videos`` into ``STORE/video``; see :func:`storage.video_ingest.ingest_videos`.

    Ingest needs no cluster: ffmpeg decodes in its own process and writer threads
    compress, with about four chunks in memory at once whatever the video's length.
    ``context`` gives only the progress bar and the log here.
    """
    job = context or JobContext()
    return ingest_videos(
        videos,
        store=store,
        fps=fps,
        scale=scale,
        size=size,
        color=color,
        chunk_frames=chunk_frames,
        zstd_level=zstd_level,
        overwrite=overwrite,
        resume=resume,
        progress=job.progress,
        log=job.log,
    )
