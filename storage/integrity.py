"""Every read notices damage: checksummed chunks, and no chunk missing where one was written.

Two faults Zarr lets through silently: a chunk that is missing reads as the fill
value (zeros for the video, NaN for factors), and numcodecs' zstd is configured
without its frame checksum, so most bit flips decompress into wrong pixels.  Here:

- every array vidsvd writes is compressed with zstd *with* its content checksum
  (xxhash64 of each chunk; measured cost on 32 MiB of video: within the noise of
  write and read times), so a damaged chunk fails to decompress;
- every array is written with ``write_empty_chunks``, so each chunk of a complete
  array exists, and :func:`require_all_chunks` (one listing of the array's keys,
  when it is opened) refuses an array with fewer;
- :func:`checked_dask_array` reads through a wrapper that turns a decompression
  failure inside a dask task into :class:`storage.errors.StoreDamagedError` naming
  the array, the chunk and the way out.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import zarr
from dask.base import tokenize

from storage.errors import StoreDamagedError
from storage.layout import ZSTD_LEVEL

__all__ = ["WRITE_CONFIG", "checked_dask_array", "compressor", "require_all_chunks"]

WRITE_CONFIG = {"write_empty_chunks": True}
"""Array configuration of every write: a chunk of fill values is written too, so a
missing chunk always means damage."""


def compressor(*, level: int = ZSTD_LEVEL) -> zarr.codecs.ZstdCodec:
    """Zstd at ``level`` (the store's level unless given), with its content checksum."""
    return zarr.codecs.ZstdCodec(level=level, checksum=True)


def require_all_chunks(array: zarr.Array, *, what: str, fix: str) -> None:
    """Refuse an array some of whose chunks are missing.

    Parameters
    ----------
    array : zarr.Array
        A complete array (every chunk was written).
    what : str
        How to name it in the message, e.g. ``"the video in STORE"``.
    fix : str
        What to run to get it back.

    Raises
    ------
    StoreDamagedError
    """
    expected = int(array.nchunks)
    if expected == 0:
        return
    present = int(array.nchunks_initialized)
    if present < expected:
        raise StoreDamagedError(
            f"{what} is damaged: {expected - present} of its {expected} chunks are missing; {fix}"
        )


class _CheckedReads:
    """A zarr array for ``dask.array.from_array`` whose failed decompressions say where."""

    def __init__(self, array: zarr.Array, what: str, fix: str) -> None:
        self.array = array
        self.what = what
        self.fix = fix
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.array[key]
        except RuntimeError as exc:  # numcodecs' zstd: "Zstd decompression error: ..."
            raise StoreDamagedError(
                f"{self.what} is damaged: a chunk at {_region(key)} does not decompress ({exc}); {self.fix}"
            ) from None


def checked_dask_array(array: zarr.Array, *, what: str, fix: str) -> da.Array:
    """The array as a lazy dask array, one dask chunk per Zarr chunk, reads checked.

    Like :func:`dask.array.from_zarr` (the same chunks, nothing read until computed),
    but a chunk that fails to decompress raises :class:`StoreDamagedError` naming
    ``what``, the chunk's region and ``fix``.
    """
    name = "checked-zarr-" + tokenize(str(array.store_path), array.shape, array.chunks, array.dtype.str)
    return da.from_array(
        _CheckedReads(array, what, fix),
        chunks=array.chunks,
        name=name,
        asarray=True,
        fancy=False,
        meta=np.empty((0,) * array.ndim, dtype=array.dtype),
    )


def _region(key: Any) -> str:
    parts = key if isinstance(key, tuple) else (key,)
    return "[" + ", ".join(f"{p.start}:{p.stop}" if isinstance(p, slice) else str(p) for p in parts) + "]"
