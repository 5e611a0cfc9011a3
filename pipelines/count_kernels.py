"""Counting kernels of uint8 frames, per pixel: in bins, below edges, value by value.

Pure numpy on one block of frames, (n, P) uint8 in and counts per pixel out, a bin
per row; no I/O, no dask.  :mod:`pipelines.median_counts` maps them over a video.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from storage.errors import InvalidParameterError

__all__ = ["BINS", "count_true", "counts_below_edges", "value_counts_block"]

BINS: Final = 16
"""Bins per count: the 16 coarse bins of 16 values (``value >> 4``), or 16 single values."""
_COUNT_TILE_BYTES: Final = 1 << 21
"""uint8 frame values per tile of the counting kernel (2 MiB: 58,000 pixels of 36 frames)."""
_UINT8_SUM_FRAMES: Final = 255
"""Frames summed in uint8 at a time: a count of at most 255 cannot overflow."""


def counts_below_edges(
    values: npt.NDArray[np.uint8],
    *,
    n_bins: int,
    bin_starts: npt.NDArray[np.uint8] | None = None,
    outside: bool = False,
    into: npt.NDArray[np.uint32] | None = None,
) -> npt.NDArray[np.uint32]:
    """(n, P) uint8 frames -> (16, P) counts per pixel of 16 bins, a tile of pixels at a time.

    Without ``bin_starts`` the bins are the coarse ones, ``value >> 4``.  With
    ``bin_starts`` (P,) the bins are the 16 values ``bin_starts[p] + j``: each tile is
    first mapped to ``value - bin_starts`` (the uint8 difference wraps around below the
    start, so values on both sides of the bins map to 16 or more, which no edge counts).
    With ``outside`` too, the result is (18, P): the frames below ``bin_starts``
    (one more comparison per value), the 16 bins, and the frames above the last bin,
    so that each pixel's column adds up to n.  With ``into`` (the result's shape), the
    counts are added into it and it is returned: a group of chunks counts into one
    partial without a fresh (16, P) array per chunk, whose pages the OS would zero.
    A bin per row, so that each tile's counts are written as contiguous rows.

    Each bin's count is the difference of two counts of frames below an edge, each
    a comparison of the tile with the edge and a sum over frames in uint8 (blocks of
    255 frames): numpy releases the GIL for both, so the worker's threads count in
    parallel, where ``np.bincount`` of ``pixel * 16 + bin`` holds it (2-3x faster
    per chunk on two threads, README).  Work: 16 comparisons and sums per value.
    Tiles hold about :data:`_COUNT_TILE_BYTES` of frames, so that each call's work
    outweighs its own cost under the GIL (with 2,048-pixel tiles two threads were
    slower than one).  Memory: a bool and a uint8 tile, (17, tile) uint32 counts, and
    with ``into`` a tile of the result.
    """
    n_frames, n_pixels = values.shape
    edges = [BINS * (j + 1) for j in range(n_bins)] if bin_starts is None else list(range(1, n_bins + 1))
    tile = min(n_pixels, max(1, _COUNT_TILE_BYTES // max(n_frames, 1)))
    window = outside and bin_starts is not None
    n_columns = n_bins + 2 if window else n_bins
    out = np.empty((n_columns, n_pixels), dtype=np.uint32) if into is None else into
    if out.shape != (n_columns, n_pixels):
        raise InvalidParameterError(f"counts must add into shape {(n_columns, n_pixels)}, got {out.shape}")
    scratch = np.empty((n_columns, tile), dtype=np.uint32)
    below = np.empty((n_frames, tile), dtype=np.bool_)
    shifted = None if bin_starts is None else np.empty((n_frames, tile), dtype=np.uint8)
    cumulative = np.empty((n_bins + 1, tile), dtype=np.uint32)
    block_sum = np.empty(tile, dtype=np.uint8)
    for start in range(0, n_pixels, tile):
        width = min(tile, n_pixels - start)
        tile_values = values[:, start : start + width]
        rows = out[:, start : start + width] if into is None else scratch[:, :width]
        if bin_starts is not None and shifted is not None:
            starts_row = bin_starts[None, start : start + width]
            if window:
                np.less(tile_values, starts_row, out=below[:, :width])
                count_true(below[:, :width], out=cumulative[0, :width], block_sum=block_sum[:width])
                rows[0] = cumulative[0, :width]
            offsets = shifted[:, :width]
            np.subtract(tile_values, starts_row, out=offsets)  # values outside: n_bins and more
            tile_values = offsets
        counts_below = cumulative[:, :width]
        counts_below[0] = 0
        for index, edge in enumerate(edges, start=1):
            if edge > np.iinfo(np.uint8).max:  # every uint8 value is below 256
                counts_below[index] = n_frames
                continue
            is_below = below[:, :width]
            np.less(tile_values, np.uint8(edge), out=is_below)
            count_true(is_below, out=counts_below[index], block_sum=block_sum[:width])
        np.subtract(counts_below[1:], counts_below[:-1], out=rows[1:-1] if window else rows)
        if window:
            np.subtract(n_frames - rows[0], counts_below[-1], out=rows[-1])
        if into is not None:
            out[:, start : start + width] += rows
    return out


def count_true(
    flags: npt.NDArray[np.bool_], *, out: npt.NDArray[np.uint32], block_sum: npt.NDArray[np.uint8]
) -> None:
    """``out`` = the true flags of each column of ``flags`` (n, width), summed in uint8 blocks."""
    out[...] = 0
    for first in range(0, flags.shape[0], _UINT8_SUM_FRAMES):
        rows = flags[first : first + _UINT8_SUM_FRAMES].view(np.uint8)
        np.add.reduce(rows, axis=0, out=block_sum)
        out += block_sum


def value_counts_block(
    values: npt.NDArray[np.uint8], *, into: npt.NDArray[np.uint32] | None = None
) -> npt.NDArray[np.uint32]:
    """(n, m) uint8 frames -> (256, m) counts: row v counts each pixel's frames of value v.

    One ``np.bincount`` of ``value * m + pixel`` (it holds the GIL, and its (n, m)
    int64 index costs 8 bytes per value: meant for a few thousand pixels, such as
    those whose median missed its window).  With ``into``, added into it.
    Memory: the index and 1 KiB of counts per pixel.
    """
    n_pixels = values.shape[1]
    index = values.astype(np.intp) * n_pixels + np.arange(n_pixels, dtype=np.intp)
    counts = np.bincount(index.ravel(), minlength=256 * n_pixels).astype(np.uint32).reshape(256, n_pixels)
    if into is None:
        return counts
    if into.shape != counts.shape:
        raise InvalidParameterError(f"counts must add into shape {counts.shape}, got {into.shape}")
    into += counts
    return into
