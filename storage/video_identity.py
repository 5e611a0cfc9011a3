"""Is the stored video the one a job asks for?  Sources by content hash, decode parameters.

A job that finds a complete video in its store reuses it only when it was made from
the same files (by sha256, in the same order) with the same frame rate, size and
colour mode; otherwise every later step would run on another video and exit 0.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from storage.video_array import StoredVideo
from storage.video_probe import output_size, probe_video

__all__ = ["video_difference"]


def video_difference(
    video: StoredVideo,
    sources: Sequence[str | os.PathLike[str]],
    *,
    fps: float | None = None,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    color: bool = False,
) -> str | None:
    """What differs between the stored video and an ingest of ``sources`` with these options.

    Parameters
    ----------
    video : StoredVideo
        The complete stored video.
    sources, fps, scale, size, color
        The request, as :func:`storage.video_ingest.ingest_videos` takes it.

    Returns
    -------
    str or None
        The first difference, in words (e.g. ``"it holds a.mp4, not b.mp4"``), or None
        when the stored video is what the request would make.

    Notes
    -----
    Reads each source once to hash it (about 1 GB/s), unless its size already differs.
    """
    stored = video.sources
    asked = [Path(source) for source in sources]
    stored_names = ", ".join(Path(source.path).name for source in stored)
    asked_names = ", ".join(path.name for path in asked)
    if len(stored) != len(asked):
        return f"it holds {stored_names}, not {asked_names}"
    infos = [probe_video(path) for path in asked]
    for source, info in zip(stored, infos, strict=True):
        if not info.same_content(size_bytes=source.size_bytes, sha256=source.sha256):
            return f"it holds {stored_names}, not {asked_names} (the contents differ)"
    width, height = output_size(infos[0], scale=scale, size=size)
    if (width, height) != (video.width, video.height):
        return f"its frames are {video.width}x{video.height}, not {width}x{height}"
    if fps != video.ingest_fps:
        return f"it was ingested at {_rate(video.ingest_fps)}, not {_rate(fps)}"
    if color != (video.frames.ndim == 4):
        return "it is in " + ("colour" if video.frames.ndim == 4 else "gray") + ", not as asked"
    return None


def _rate(fps: float | None) -> str:
    return "the native frame rate" if fps is None else f"--fps {fps:g}"
