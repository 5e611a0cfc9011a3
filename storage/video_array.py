"""Read ``STORE/video`` back: a lazy dask array plus what ingest recorded about it."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import zarr

from storage.errors import StoreIncompleteError, StoreNotFoundError
from storage.layout import COMPLETE_ATTR, PROGRESS_ATTR, VIDEO_ARRAY
from storage.store import StoreLocation, as_location, open_store

__all__ = ["StoredVideo", "open_video"]


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
    frames = da.from_zarr(array)
    return StoredVideo(
        frames=frames,
        fps=float(attrs["fps"]),
        fingerprint=str(attrs["fingerprint"]),
        segments=[(int(a), int(b)) for a, b in attrs["segments"]],
        attrs=attrs,
        location=loc,
        _array=array,
    )
