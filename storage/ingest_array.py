"""The video array of an ingest: created with its record, or reopened to resume it.

``vidsvd ingest`` (:mod:`storage.video_ingest`) writes frames into the array this module
prepares; a resume continues only an ingest of the same videos and options, at the
zstd level it started with.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import zarr

from storage.errors import StoreExistsError, StoreIncompleteError
from storage.integrity import compressor
from storage.layout import (
    COMPLETE_ATTR,
    PROGRESS_ATTR,
    TIME_ARRAY,
    TIME_DIMS,
    VIDEO_ARRAY,
    VIDEO_COLOR_DIMS,
    VIDEO_DIMS,
    VIDEO_ZSTD_LEVEL,
)
from storage.provenance import library_versions
from storage.store import StoreLocation, create_store, delete_store, open_store, store_exists
from storage.video_decoder import DecodeOptions, SourceInfo, ffmpeg_version

__all__ = ["ingest_parameters", "prepare_video_array", "write_frame_times"]


def ingest_parameters(
    infos: Sequence[SourceInfo],
    options: DecodeOptions,
    chunk_frames: int,
    scale: float | None,
) -> dict[str, Any]:
    """What an ingest was asked for, recorded on the array: a resume must ask the same.

    The sources (path, size, modification time), the output's frame rate, scale,
    size, colour and chunking, and ffmpeg's version.
    """
    return {
        "sources": [
            {"path": i.path, "size_bytes": i.size_bytes, "mtime_ns": os.stat(i.path).st_mtime_ns}
            for i in infos
        ],
        "fps": options.fps,
        "scale": scale,
        "width": options.width,
        "height": options.height,
        "color": options.color,
        "chunk_frames": chunk_frames,
        "ffmpeg": ffmpeg_version(),
    }


def _zstd_level(array: zarr.Array) -> int | None:
    """The zstd level the array's chunks are written at (None: not zstd)."""
    for codec in array.metadata.codecs:
        if isinstance(codec, zarr.codecs.ZstdCodec):
            return int(codec.level)
    return None


def prepare_video_array(
    loc: StoreLocation,
    *,
    infos: Sequence[SourceInfo],
    options: DecodeOptions,
    chunk_frames: int,
    zstd_level: int | None,
    scale: float | None,
    overwrite: bool,
    resume: bool,
) -> tuple[zarr.Array, int]:
    """Create ``video`` (or reopen it to resume); return the array and its first frame to write."""
    if resume and store_exists(loc):
        group = open_store(loc, writable=True)
        if VIDEO_ARRAY not in group:
            raise StoreIncompleteError(f"{loc} holds no video to resume; run ingest without --resume")
        array = group[VIDEO_ARRAY]
        assert isinstance(array, zarr.Array)
        if array.attrs.get(COMPLETE_ATTR):
            raise StoreExistsError(
                f"{loc} already holds a complete video; nothing to resume (use --overwrite to redo it)"
            )
        wanted = ingest_parameters(infos, options, chunk_frames, scale)
        recorded = array.attrs.get("ingest")
        if recorded != wanted:
            raise StoreExistsError(
                f"{loc} holds an interrupted ingest of other videos or options (recorded:"
                f" {_describe(recorded)}); repeat them to continue it, or pass --overwrite to start again"
            )
        started_at = _zstd_level(array)
        if zstd_level is not None and started_at is not None and zstd_level != started_at:
            raise StoreExistsError(
                f"{loc} holds an interrupted ingest at --zstd-level {started_at}; resume it at that"
                " level (or without --zstd-level), or pass --overwrite to start again"
            )
        state = array.attrs[PROGRESS_ATTR]
        frames_done = int(state["frames_written"])
        if array.shape[0] != frames_done:
            array.resize((frames_done, *array.shape[1:]))
        return array, frames_done

    if store_exists(loc):
        group = open_store(loc)  # refuses foreign data before anything is deleted
        if not overwrite:
            video = group.get(VIDEO_ARRAY)
            if video is not None and not video.attrs.get(COMPLETE_ATTR):
                raise StoreIncompleteError(
                    f"{loc} holds an interrupted ingest; pass --resume to continue it or "
                    "--overwrite to start again"
                )
            raise StoreExistsError(f"{loc} already exists; pass --overwrite to replace it")
        delete_store(loc)
    group = create_store(loc)
    parameters = ingest_parameters(infos, options, chunk_frames, scale)
    array = group.create_array(
        name=VIDEO_ARRAY,
        shape=(0, *options.frame_shape),
        chunks=(chunk_frames, *options.frame_shape),
        dtype="uint8",
        compressors=compressor(level=VIDEO_ZSTD_LEVEL if zstd_level is None else zstd_level),
        fill_value=0,
        dimension_names=VIDEO_COLOR_DIMS if options.color else VIDEO_DIMS,
        attributes={
            COMPLETE_ATTR: False,
            "ingest": parameters,
            "fps": options.fps if options.fps is not None else infos[0].fps,
            "scale": scale,
            "width": options.width,
            "height": options.height,
            "color": options.color,
            "versions": library_versions(),
            PROGRESS_ATTR: {"frames_written": 0, "sources_done": []},
        },
    )
    return array, 0


def write_frame_times(loc: StoreLocation, *, n_frames: int, fps: float) -> None:
    """``STORE/time``: each frame's time in seconds (``frame / fps``), xarray's coordinate.

    Sources concatenated follow each other without a gap.  8 bytes per frame.
    """
    times = np.arange(n_frames, dtype=np.float64) / fps
    root = open_store(loc, writable=True)
    target = root.create_array(
        name=TIME_ARRAY,
        shape=times.shape,
        chunks=(max(1, n_frames),),
        dtype="float64",
        compressors=compressor(),
        dimension_names=TIME_DIMS,
        attributes={"units": "s", "long_name": "time of the frame from the start of the first video"},
        overwrite=True,
    )
    target[:] = times


def _describe(recorded: Any) -> str:
    if not isinstance(recorded, dict):
        return "unknown"
    names = [os.path.basename(s.get("path", "?")) for s in recorded.get("sources", [])]
    return (
        f"videos {', '.join(names)}, fps {recorded.get('fps')}, "
        f"size {recorded.get('width')}x{recorded.get('height')}, color {recorded.get('color')}, "
        f"chunk frames {recorded.get('chunk_frames')}"
    )
