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

The wrapper also reads faster than Zarr's own indexing where it can: a dask chunk that
is one whole Zarr chunk of an array stored as plain zstd (what vidsvd writes) is
decompressed straight into the array handed to dask.  Zarr decodes into a buffer of
its own and copies that into a fresh output, and under distributed's workers (which
set ``MALLOC_TRIM_THRESHOLD_``) each of the two chunk-sized allocations is mapped and
faulted in anew: a 33 MB chunk of 720p video took 1.5-2.5 times as long to read
(README, ``vidsvd decompose``).  The same libzstd checks the same content checksum
either way.
"""

from __future__ import annotations

import sys
from typing import Any

import dask.array as da
import numpy as np
import numpy.typing as npt
import zarr
import zstandard
from dask.base import tokenize
from numcodecs import Zstd
from zarr.codecs import BytesCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

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
        self.direct = _plain_zstd(array)

    def __getitem__(self, key: Any) -> Any:
        try:
            coords = _whole_chunk(key, shape=self.shape, chunks=self.array.chunks) if self.direct else None
            values = np.asarray(self.array[key] if coords is None else self._read_chunk(coords, key))
        except RuntimeError as exc:  # numcodecs' zstd: "Zstd decompression error: ..."
            raise StoreDamagedError(
                f"{self.what} is damaged: a chunk at {_region(key)} does not decompress ({exc}); {self.fix}"
            ) from None
        # Read-only: a held (persisted) chunk is the very array every later task gets,
        # and the embedded worker in this process hands it to the caller's futures
        # without a copy: changed in place, it would change what every later pass reads.
        values.flags.writeable = False
        return values

    def _read_chunk(self, coords: tuple[int, ...], key: tuple[slice, ...]) -> npt.NDArray[Any]:
        """One whole chunk, decompressed straight into the array returned (edge chunks: a view)."""
        chunk_key = self.array.metadata.encode_chunk_key(coords)
        stored = sync((self.array.store_path / chunk_key).get(prototype=default_buffer_prototype()))
        if stored is None:  # every chunk existed when the array was opened (require_all_chunks)
            raise StoreDamagedError(
                f"{self.what} is damaged: its chunk at {_region(key)} is missing; {self.fix}"
            )
        compressed = stored.as_numpy_array()
        out = np.empty(self.array.chunks, dtype=self.dtype)
        # zstd fills as many bytes as the frame says it holds: a frame of another size
        # (another array's chunk, an edited chunk shape) must not leave bytes unset
        try:
            declared = zstandard.frame_content_size(compressed)
        except zstandard.ZstdError:  # not a zstd frame: zarr's own read says what is wrong
            declared = -1
        if declared == -1:  # or a frame that does not record its size: zarr checks it
            return np.asarray(self.array[key])
        if declared != out.nbytes:
            raise StoreDamagedError(
                f"{self.what} is damaged: its chunk at {_region(key)} holds {declared} bytes,"
                f" not the {out.nbytes} of a chunk; {self.fix}"
            )
        Zstd().decode(compressed, out=out)  # checks the content checksum
        return out[tuple(slice(0, part.stop - part.start) for part in key)]


def _plain_zstd(array: zarr.Array) -> bool:
    """Whether the chunks of ``array`` are its C-ordered bytes in one zstd frame, nothing else."""
    metadata = array.metadata
    if metadata.zarr_format != 3 or len(metadata.codecs) != 2:
        return False
    as_bytes, compressed = metadata.codecs
    endian = getattr(getattr(as_bytes, "endian", None), "value", None)  # an Endian, or None for bytes
    native = array.dtype.itemsize == 1 or endian == sys.byteorder
    return isinstance(as_bytes, BytesCodec) and native and isinstance(compressed, ZstdCodec)


def _whole_chunk(key: Any, *, shape: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[int, ...] | None:
    """The grid coordinates of the chunk ``key`` selects exactly, or None if it selects anything else."""
    if not isinstance(key, tuple) or len(key) != len(shape):
        return None
    coords = []
    for part, size, chunk in zip(key, shape, chunks, strict=True):
        if not isinstance(part, slice) or part.step not in (None, 1) or part.start is None:
            return None
        start, stop = int(part.start), part.stop
        if start % chunk or stop != min(start + chunk, size):
            return None
        coords.append(start // chunk)
    return tuple(coords)


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
