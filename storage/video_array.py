"""Read ``STORE/video`` back: a lazy dask array plus what ingest recorded about it."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import zarr

from storage.errors import StoreIncompleteError, StoreNotFoundError
from storage.integrity import checked_dask_array, require_all_chunks
from storage.layout import COMPLETE_ATTR, PROGRESS_ATTR, VIDEO_ARRAY
from storage.store import StoreLocation, as_location, open_store

__all__ = ["SourceRecord", "StoredVideo", "open_video"]


@dataclass(frozen=True, kw_only=True)
class SourceRecord:
    """One source video as ingest recorded it.

    Attributes
    ----------
    path : str
        Absolute path of the file when it was ingested.
    size_bytes : int
        Its size.
    sha256 : str
        Hex sha256 of its bytes.
    codec : str
        Video codec, as ffmpeg names it.
    native_fps : float
        Its frame rate.
    native_width, native_height : int
        Its frame size as ffmpeg delivers it (rotation tags applied).
    duration_s : float
        Its duration (0 when the container does not say).
    frame_range : (int, int)
        Frames [start, stop) of the stored video that came from it.
    """

    path: str
    size_bytes: int
    sha256: str
    codec: str
    native_fps: float
    native_width: int
    native_height: int
    duration_s: float
    frame_range: tuple[int, int]

    @classmethod
    def from_attrs(cls, record: dict[str, Any]) -> SourceRecord:
        """The record of one entry of the video's ``sources`` attribute."""
        start, stop = record["frame_range"]
        return cls(
            path=str(record["path"]),
            size_bytes=int(record["size_bytes"]),
            sha256=str(record.get("sha256", "")),
            codec=str(record.get("codec", "")),
            native_fps=float(record.get("native_fps", 0.0)),
            native_width=int(record["native_width"]),
            native_height=int(record["native_height"]),
            duration_s=float(record.get("duration_s", 0.0)),
            frame_range=(int(start), int(stop)),
        )


@dataclass(frozen=True, kw_only=True)
class StoredVideo:
    """A complete stored video.

    Attributes
    ----------
    frames : dask.array.Array
        Shape (frame, y, x[, channel]), uint8, one dask chunk per Zarr chunk; lazy.
    fps : float
        Frame rate of the stored frames.
    fingerprint : str
        sha256 over the stored frames; factors computed from this video record it.
    segments : list of (int, int)
        Frame range [start, stop) of each source, in order.
    attrs : dict
        Every attribute ingest wrote (sources, parameters, versions, ...).
    location : StoreLocation
        Where the store is.
    """

    frames: da.Array
    fps: float
    fingerprint: str
    segments: list[tuple[int, int]]
    attrs: dict[str, Any]
    location: StoreLocation
    _array: zarr.Array | None = field(default=None, repr=False, compare=False)

    @property
    def n_frames(self) -> int:
        """Number of frames T."""
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return int(self.frames.shape[2])

    @property
    def sources(self) -> tuple[SourceRecord, ...]:
        """The source videos, in the order they were concatenated."""
        return tuple(SourceRecord.from_attrs(record) for record in self.attrs.get("sources", []))

    @property
    def source_bytes(self) -> int:
        """Bytes of all source files together."""
        return sum(source.size_bytes for source in self.sources)

    @property
    def ingest_fps(self) -> float | None:
        """The frame rate ingest was asked for (``--fps``), None for the native rate."""
        fps = self.attrs.get("ingest", {}).get("fps")
        return None if fps is None else float(fps)

    @property
    def ingest_wall_time_s(self) -> float | None:
        """Seconds the ingest took, when recorded."""
        seconds = self.attrs.get("ingest_wall_time_s")
        return None if seconds is None else float(seconds)

    @property
    def ffmpeg_version(self) -> str | None:
        """The ffmpeg that decoded the sources."""
        version = self.attrs.get("ingest", {}).get("ffmpeg")
        return None if version is None else str(version)

    @functools.cached_property
    def stored_bytes(self) -> int:
        """Compressed bytes of the array in the store (what the store really costs).

        Measured on first use: zarr sizes every chunk, one request per chunk on
        object storage (about 2 s for 400 chunks on a local S3 server), so opening
        the video does not pay for it.
        """
        if self._array is None:
            return 0
        return int(self._array.nbytes_stored())


def open_video(store: StoreLocation | str | os.PathLike[str]) -> StoredVideo:
    """Open the complete video of a store as a lazy dask array.

    Raises
    ------
    StoreNotFoundError
        No store, or no ``video`` in it.
    StoreIncompleteError
        The ingest was interrupted (``complete`` is not set).
    """
    loc = as_location(store)
    group = open_store(loc)
    if VIDEO_ARRAY not in group:
        raise StoreNotFoundError(f"{loc} holds no video; run `vidsvd ingest VIDEO --store {loc}`")
    array = group[VIDEO_ARRAY]
    assert isinstance(array, zarr.Array)
    attrs = dict(array.attrs)
    if not attrs.get(COMPLETE_ATTR):
        written = attrs.get(PROGRESS_ATTR, {}).get("frames_written", 0)
        raise StoreIncompleteError(
            f"the video in {loc} is incomplete (ingest interrupted after {written} frames); "
            f"rerun `vidsvd ingest ... --store {loc} --resume` or `--overwrite`"
        )
    fix = f"re-ingest it with `vidsvd ingest ... --store {loc} --overwrite`"
    require_all_chunks(array, what=f"the video in {loc}", fix=fix)
    frames = checked_dask_array(array, what=f"the video in {loc}", fix=fix)
    return StoredVideo(
        frames=frames,
        fps=float(attrs["fps"]),
        fingerprint=str(attrs["fingerprint"]),
        segments=[(int(a), int(b)) for a, b in attrs["segments"]],
        attrs=attrs,
        location=loc,
        _array=array,
    )
