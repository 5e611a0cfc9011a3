"""The exact per-pixel temporal median of uint8 frames, out of core, by counting.

Each pixel's median is the value of rank ``(T - 1) // 2`` (the lower median).  It is
found from counts of frames summed over chunks, never from a sort of the time axis:

window (one read)
    :func:`window_starts` puts a window of :data:`WINDOW_VALUES` values around a first
    guess of each pixel's median (the median of a sample of frames), and
    :func:`window_counts` counts, per pixel, the frames below the window, at each of
    its values, and above it.  Where the median's rank falls inside the window,
    :func:`median_in_windows` reads the median off the counts, exactly.
coarse and fine (two reads)
    :func:`coarse_counts` counts each pixel's frames in 16 coarse bins (value >> 4);
    :func:`median_bin` finds the bin that holds the median; :func:`fine_counts` counts
    the 16 values inside it; :func:`median_from_counts` gives the median.  This holds
    for every pixel.
value by value (one read of a few pixels)
    :func:`value_counts` counts each of the 256 values for a few thousand pixels;
    :func:`median_of_values` gives their medians.  The models count the pixels whose
    median fell outside their window so (:func:`pixel_columns` takes those pixels'
    frames), or, when more than :data:`VALUE_COUNT_PIXELS` missed, coarse and fine.

On real footage 0.003-0.4 % of the pixels miss their window (a guess from 64 frames,
the README's "Background models"), so the median costs one read of the video and one
read of a few columns.  Per task the counts of a group of chunks, (16, P) or (18, P)
uint32 (59-66 MB at 1280x720), whatever the number of frames; no float copy.  The
frames may be divided by a gain per frame first
(:func:`pipelines.frame_gains.normalized_frames`), in the
task that counts them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any, Final

import dask
import dask.array as da
import numpy as np
import numpy.typing as npt

from pipelines.chunk_groups import chunk_groups, sum_partials
from pipelines.count_kernels import BINS, counts_below_edges, value_counts_block
from pipelines.frame_gains import divide_frames, gain_divisors
from pipelines.shapes import require_gray_video
from storage.errors import InconsistentResultError, InvalidParameterError

__all__ = [
    "VALUE_COUNT_PIXELS",
    "WINDOW_VALUES",
    "coarse_counts",
    "fine_counts",
    "median_bin",
    "median_from_counts",
    "median_in_windows",
    "median_of_values",
    "pixel_columns",
    "value_counts",
    "window_counts",
    "window_starts",
]


def _coarse_block(
    block: npt.NDArray[np.uint8], *, into: npt.NDArray[np.uint32] | None = None
) -> npt.NDArray[np.uint32]:
    return counts_below_edges(block.reshape(block.shape[0], -1), n_bins=BINS, into=into)


def _fine_block(
    block: npt.NDArray[np.uint8],
    coarse_bin: npt.NDArray[np.uint8],
    *,
    into: npt.NDArray[np.uint32] | None = None,
) -> npt.NDArray[np.uint32]:
    bin_starts = np.left_shift(coarse_bin.astype(np.uint8), 4)
    return counts_below_edges(
        block.reshape(block.shape[0], -1), n_bins=BINS, bin_starts=bin_starts, into=into
    )


def coarse_counts(
    frames: da.Array,
    *,
    gains: npt.NDArray[np.floating] | da.Array | None = None,
    frames_per_task: int | None = None,
) -> da.Array:
    """Per pixel, how many frames fall in each coarse bin ``value >> 4``; lazy.

    Parameters
    ----------
    frames : dask.array.Array
        (frame, y, x) uint8, whole frames per chunk.
    gains : numpy.ndarray or dask.array.Array, optional
        (T,): count the frames divided by these
        (:func:`pipelines.frame_gains.normalized_frames`), each
        chunk divided in the task that counts it.  Lazy gains of the same frames
        (:func:`pipelines.frame_gains.frame_gains`) computed in the same graph share
        the counts' reads: the gains and the counts divided by them in one read.
    frames_per_task : int, optional
        One task counts consecutive chunks of at least this many frames into one
        partial (:func:`pipelines.chunk_groups.chunk_groups`); None: a chunk per task.

    Returns
    -------
    dask.array.Array
        (16, P) uint32, a bin per row.  One read of the video; per task the group's
        chunks (with ``gains``, a uint8 copy of one of them at a time) and a (16, P)
        partial.
    """
    return _summed_counts(frames, _coarse_block, gains=gains, frames_per_task=frames_per_task)


def fine_counts(
    frames: da.Array,
    coarse_bin: npt.NDArray[np.uint8],
    *,
    gains: npt.NDArray[np.floating] | da.Array | None = None,
    frames_per_task: int | None = None,
) -> da.Array:
    """Per pixel, how many frames take each value inside the pixel's ``coarse_bin``; lazy.

    ``gains`` and ``frames_per_task`` as for :func:`coarse_counts`.

    Returns
    -------
    dask.array.Array
        (16, P) uint32: row j counts the frames whose value is ``16 * coarse_bin + j``.
    """
    shared_bin = _per_pixel(frames, coarse_bin, name="coarse_bin")
    return _summed_counts(frames, _fine_block, shared_bin, gains=gains, frames_per_task=frames_per_task)


def _per_pixel(frames: da.Array, values: npt.NDArray[np.uint8], *, name: str) -> Any:
    """``values`` (P,) uint8 checked against the frames' pixels, as one delayed copy in the graph."""
    require_gray_video(frames)
    n_pixels = int(frames.shape[1]) * int(frames.shape[2])
    if values.shape != (n_pixels,):
        raise InvalidParameterError(f"{name} must have shape ({n_pixels},), got {values.shape}")
    return dask.delayed(np.asarray(values, dtype=np.uint8), pure=True)


def _summed_counts(
    frames: da.Array,
    count_block: Callable[..., npt.NDArray[np.uint32]],
    *args: Any,
    gains: npt.NDArray[np.floating] | da.Array | None,
    frames_per_task: int | None,
    n_columns: int = BINS,
) -> da.Array:
    """``count_block`` on every chunk of whole frames, summed per group of chunks, then in a tree.

    Returns (``n_columns``, P) uint32, the rows ``count_block`` makes.
    """
    require_gray_video(frames)
    whole = frames.rechunk({1: -1, 2: -1})
    n_pixels = int(frames.shape[1]) * int(frames.shape[2])
    # the array's own keys and tasks: optimised here, the read tasks came out under the same
    # keys with other specs in each pass, which the scheduler warns may deadlock
    blocks = list(whole.to_delayed(optimize_graph=False).ravel())
    divisors = None if gains is None else _chunk_divisors(gains, whole.chunks[0])
    partials = [
        dask.delayed(_count_group, pure=True)(
            [blocks[i] for i in group],
            None if divisors is None else [divisors[i] for i in group],
            count_block,
            *args,
        )
        for group in chunk_groups(whole.chunks[0], frames_per_task=frames_per_task)
    ]
    return sum_partials(partials, shape=(n_columns, n_pixels), dtype=np.uint32, in_place=True)


def _chunk_divisors(gains: npt.NDArray[np.floating] | da.Array, frame_chunks: tuple[int, ...]) -> list[Any]:
    """The divisors of each chunk of frames: numpy slices, or the delayed chunks of lazy gains."""
    n_frames = sum(frame_chunks)
    if isinstance(gains, da.Array):
        if gains.shape != (n_frames,):
            raise InvalidParameterError(f"gains must have shape ({n_frames},), got {gains.shape}")
        lazy = gains.rechunk((frame_chunks,)).map_blocks(
            gain_divisors, dtype=np.float32, meta=np.empty((0,), np.float32)
        )
        # the gains' own keys: their reads of the frames are the counts' reads, one per chunk
        return list(lazy.to_delayed(optimize_graph=False).ravel())
    values = gain_divisors(gains, n_frames=n_frames)
    bounds = np.cumsum((0, *frame_chunks))
    return [values[start:stop] for start, stop in pairwise(bounds)]


def _count_group(
    blocks: Sequence[npt.NDArray[np.uint8]],
    divisors: Sequence[npt.NDArray[np.float32]] | None,
    count_block: Callable[..., npt.NDArray[np.uint32]],
    *args: Any,
) -> npt.NDArray[np.uint32]:
    """The counts of consecutive chunks, one after the other, into one partial (the first chunk's)."""
    total: npt.NDArray[np.uint32] | None = None
    for index, block in enumerate(blocks):
        values = block if divisors is None else divide_frames(block, divisors[index][:, None, None])
        total = count_block(values, *args, into=total)
    assert total is not None  # a group holds at least one chunk
    return total


def median_bin(coarse: npt.NDArray[np.uint32], *, n_frames: int) -> npt.NDArray[np.uint8]:
    """The coarse bin (value >> 4) holding each pixel's median, from :func:`coarse_counts`.

    Raises
    ------
    InconsistentResultError
        A pixel's counts do not add up to ``n_frames``: a partial count was lost or
        added twice (the counts are summed in place).
    """
    _require_frames_counted(np.asarray(coarse).sum(axis=0, dtype=np.int64), n_frames, what="coarse counts")
    return _bin_and_below(coarse, rank=(n_frames - 1) // 2)[0]


def _require_frames_counted(counted: npt.NDArray[np.int64], expected: Any, *, what: str) -> None:
    """Raise InconsistentResultError unless every pixel counted the frames expected of it."""
    if not np.array_equal(counted, np.broadcast_to(np.asarray(expected, dtype=np.int64), counted.shape)):
        raise InconsistentResultError(
            f"the background's {what} do not add up to the frames counted: a partial count was lost or "
            "added twice (a worker failure?); nothing was written, run the command again"
        )


def median_from_counts(
    coarse: npt.NDArray[np.uint32], fine: npt.NDArray[np.uint32], *, n_frames: int
) -> npt.NDArray[np.uint8]:
    """Each pixel's median, the value of rank ``(n_frames - 1) // 2`` (0-based), from both counts.

    Memory and time: a few (P,) vectors, a bin at a time (0.2 s at 1280x720 against
    0.7 s for cumulative sums over (16, P) int64 copies, measured); this process runs
    it between passes while the cluster waits.

    Raises
    ------
    InconsistentResultError
        A pixel's fine counts are not the frames of its coarse bin: a partial count was
        lost or added twice.
    """
    rank = (n_frames - 1) // 2
    coarse_bin, frames_below = _bin_and_below(coarse, rank=rank)
    # the fine counts of each pixel are the frames of its coarse bin, once each
    in_bin = np.take_along_axis(np.asarray(coarse), coarse_bin[None, :].astype(np.intp), axis=0)[0]
    _require_frames_counted(np.asarray(fine).sum(axis=0, dtype=np.int64), in_bin, what="fine counts")
    offset, _ = _bins_before_rank(np.asarray(fine, dtype=np.uint32), frames_below, rank=rank)
    median: npt.NDArray[np.uint8] = coarse_bin * np.uint8(BINS) + offset
    return median


def _bin_and_below(
    coarse: npt.NDArray[np.uint32], *, rank: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint32]]:
    """Per pixel, the coarse bin holding the frame of ``rank``, and the frames in the bins below it."""
    columns = np.asarray(coarse, dtype=np.uint32)  # (16, P): a bin per row
    return _bins_before_rank(columns, np.zeros(columns.shape[1], dtype=np.uint32), rank=rank)


def _bins_before_rank(
    bins: npt.NDArray[np.uint32], frames_below: npt.NDArray[np.uint32], *, rank: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint32]]:
    """Per pixel, how many of ``bins`` (n, P) lie wholly below the frame of ``rank``.

    ``frames_below`` (P,) are the frames below the first bin.  Returns that number of
    bins (so the bin holding the frame of ``rank`` is the next one; the last bin when
    every other lies below) and the frames below that bin.  A bin at a time, in place
    of cumulative sums over (n, P) int64 copies.
    """
    frames_so_far = frames_below.copy()
    below_it = frames_below.copy()
    passed = np.zeros(bins.shape[1], dtype=np.uint8)
    for counts in bins[:-1]:
        frames_so_far += counts
        beyond = frames_so_far <= rank  # the frame of that rank lies in a later bin
        passed += beyond
        np.copyto(below_it, frames_so_far, where=beyond)
    return passed, below_it


WINDOW_VALUES: Final = BINS
"""Values of each pixel's window, centred on the first guess of its median.  A wider
window misses fewer medians at one more comparison per value and per frame; with 16,
on seven real videos, 0.003-0.4 % of the pixels missed (README, "Background models")."""


def window_starts(guess: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """The first value of each pixel's window: ``guess - 8``, within [0, 240]; (P,) uint8.

    ``guess`` holds a first estimate of each pixel's median (any shape, P values), such
    as the median of a sample of frames.  Windows at the ends are moved inside the
    256 values, so that a median of 0 or 255 is still inside its window.
    """
    centred = np.asarray(guess, dtype=np.int16).ravel() - WINDOW_VALUES // 2
    starts: npt.NDArray[np.uint8] = np.clip(centred, 0, 256 - WINDOW_VALUES).astype(np.uint8)
    return starts


def window_counts(
    frames: da.Array,
    starts: npt.NDArray[np.uint8],
    *,
    gains: npt.NDArray[np.floating] | da.Array | None = None,
    frames_per_task: int | None = None,
) -> da.Array:
    """Per pixel, the frames below its window, at each value of it, and above it; lazy.

    Parameters
    ----------
    frames : dask.array.Array
        (frame, y, x) uint8, whole frames per chunk.
    starts : numpy.ndarray
        (P,) uint8 from :func:`window_starts`: pixel p's window is the values
        ``starts[p] + j``, j < :data:`WINDOW_VALUES`.
    gains, frames_per_task
        As for :func:`coarse_counts`.

    Returns
    -------
    dask.array.Array
        (18, P) uint32: the frames below the window, one row per value of it, the
        frames above it; each pixel's column adds up to T.  One read of the video; 17 comparisons
        and sums per value.
    """
    shared = _per_pixel(frames, starts, name="starts")
    return _summed_counts(
        frames, _window_block, shared, gains=gains, frames_per_task=frames_per_task, n_columns=BINS + 2
    )


def _window_block(
    block: npt.NDArray[np.uint8],
    starts: npt.NDArray[np.uint8],
    *,
    into: npt.NDArray[np.uint32] | None = None,
) -> npt.NDArray[np.uint32]:
    return counts_below_edges(
        block.reshape(block.shape[0], -1), n_bins=BINS, bin_starts=starts, outside=True, into=into
    )


def median_in_windows(
    counts: npt.NDArray[np.uint32], starts: npt.NDArray[np.uint8], *, n_frames: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """Each pixel's median from :func:`window_counts`, where its window holds it.

    Returns
    -------
    median : numpy.ndarray
        (P,) uint8: the value of rank ``(n_frames - 1) // 2`` where ``missed`` is
        False; 0 where it is True.
    missed : numpy.ndarray
        (P,) bool: the pixels whose median lies below or above their window.

    Raises
    ------
    InconsistentResultError
        A pixel's counts do not add up to ``n_frames``: a partial count was lost or
        added twice.
    """
    table = np.asarray(counts, dtype=np.uint32)  # (18, P): below, the window's values, above
    _require_frames_counted(table.sum(axis=0, dtype=np.int64), n_frames, what="window counts")
    rank = (n_frames - 1) // 2
    missed: npt.NDArray[np.bool_] = (table[0] > rank) | (n_frames - table[-1] <= rank)
    offset, _ = _bins_before_rank(table[1:-1], table[0], rank=rank)
    median = np.asarray(starts, dtype=np.uint8) + offset
    median[missed] = 0
    return median, missed


def pixel_columns(frames: da.Array, pixels: npt.NDArray[np.integer]) -> da.Array:
    """The frames of some pixels only, as a video one pixel high; lazy.

    ``frames`` (T, y, x) uint8 and ``pixels`` (m,) sorted flat indices give (T, 1, m),
    whose counts are those pixels' counts in the whole video.  Per task a chunk's
    columns, taken from the chunk read.
    """
    require_gray_video(frames)
    flat = frames.rechunk({1: -1, 2: -1}).reshape(int(frames.shape[0]), -1)
    return flat[:, np.asarray(pixels, dtype=np.intp)][:, None, :]


VALUE_COUNT_PIXELS: Final = 1 << 16
"""Most pixels :func:`value_counts` counts at once: 256 counts per pixel make a 64 MiB
partial.  The models count more missed pixels by coarse and fine counts instead."""


def value_counts(
    frames: da.Array,
    *,
    gains: npt.NDArray[np.floating] | da.Array | None = None,
    frames_per_task: int | None = None,
) -> da.Array:
    """Per pixel, how many frames take each of the 256 values; lazy.

    For a few pixels (:func:`pixel_columns`, at most :data:`VALUE_COUNT_PIXELS`): one
    read of their columns gives their exact medians (:func:`median_of_values`), where
    coarse and fine counts take two.  ``gains`` and ``frames_per_task`` as for
    :func:`coarse_counts`.

    Returns
    -------
    dask.array.Array
        (256, P) uint32, a value per row.

    Raises
    ------
    InvalidParameterError
        More pixels than :data:`VALUE_COUNT_PIXELS`.
    """
    require_gray_video(frames)
    n_pixels = int(frames.shape[1]) * int(frames.shape[2])
    if n_pixels > VALUE_COUNT_PIXELS:
        raise InvalidParameterError(
            f"value counts take at most {VALUE_COUNT_PIXELS} pixels, got {n_pixels};"
            " count them coarse and fine"
        )
    return _summed_counts(frames, _value_block, gains=gains, frames_per_task=frames_per_task, n_columns=256)


def _value_block(
    block: npt.NDArray[np.uint8], *, into: npt.NDArray[np.uint32] | None = None
) -> npt.NDArray[np.uint32]:
    return value_counts_block(block.reshape(block.shape[0], -1), into=into)


def median_of_values(counts: npt.NDArray[np.uint32], *, n_frames: int) -> npt.NDArray[np.uint8]:
    """Each pixel's median, the value of rank ``(n_frames - 1) // 2``, from :func:`value_counts`.

    Raises
    ------
    InconsistentResultError
        A pixel's counts do not add up to ``n_frames``: a partial count was lost or
        added twice.
    """
    table = np.asarray(counts, dtype=np.uint32)
    _require_frames_counted(table.sum(axis=0, dtype=np.int64), n_frames, what="value counts")
    frames_so_far = np.cumsum(table, axis=0, dtype=np.int64)  # (256, m): frames at or below each value
    median: npt.NDArray[np.uint8] = np.argmax(frames_so_far > (n_frames - 1) // 2, axis=0).astype(np.uint8)
    return median
