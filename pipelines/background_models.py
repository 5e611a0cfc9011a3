"""Robust background models, out of core: the exact temporal median, and a gain-corrected one.

Plain SVD fits the background by squared error, so whatever moves often (people who
walk the same path, a group that lingers) leaks into it.  A per-pixel temporal median
ignores anything present in fewer than half of the frames.

``median``
    The exact per-pixel temporal median b (the lower median, the value of rank
    ``(T - 1) // 2``), from counts: a first pass counts each pixel's frames in 16 coarse
    bins (value >> 4) and finds the bin that holds the median; a second pass counts
    the 16 values inside that bin.  Two reads of the uint8 video, no float copy, and
    per task 16 counts per pixel (P x 16 uint32: 59 MB at 1280x720), whatever the
    number of frames.  The background of frame t is b.
``robust``
    A plate b times a gain per frame, ``g_t`` the ratio ``x_t[p] / b[p]`` that most
    well-lit pixels (b >= 16) agree on (:mod:`pipelines.frame_gains`): slow
    illumination changes (clouds, auto exposure) move the background with them
    instead of becoming foreground, and moving objects do not move the gain unless
    they cover most of the frame with ratios more alike than the background's.  The
    plate is the exact median of the frames divided by their gains, not of the frames themselves: under a
    changing illumination the plain median of a pixel is the value of whichever frame
    has the median rank there, and a person passing over the pixel shifts that rank,
    so the plain plate is off by a fraction of the illumination's range (measured on
    a synthetic scene whose light varies by +-40 %: background residuals of 5 to 13
    grey levels against its sensor noise of 3, F 0.92; with the gains divided out
    first, 3 and F 0.999).  Three reads: the two counting passes of the median of the
    frames divided by their gains against the median of a sample of frames
    (:data:`GAIN_SAMPLE_FRAMES`; its own error is that of each pixel, and the median
    over pixels washes it out) -- the first pass measures those gains chunk by chunk
    from the chunks it counts -- and the gains against that plate.

Both are rank-1 backgrounds ``b g^T`` and are returned as SVD-style factors U (P, 1),
s (1,), Vt (1, T) (``U = b/|b|``, ``s = |b| |g|``, ``Vt = g/|g|``), so separate, report
and apply use them as they use the SVD's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any, Final, NamedTuple

import cv2
import dask
import dask.array as da
import numpy as np
import numpy.typing as npt

from pipelines.chunk_groups import chunk_groups, sum_partials
from pipelines.frame_gains import MIN_GAIN
from pipelines.masks import sample_frames
from pipelines.shapes import require_gray_video
from storage.errors import InconsistentResultError, InvalidParameterError

__all__ = [
    "BACKGROUND_MODELS",
    "DEFAULT_MODEL",
    "FITTED_MODELS",
    "GAIN_SAMPLE_FRAMES",
    "RankOneBackground",
    "chosen_model",
    "coarse_counts",
    "fine_counts",
    "median_bin",
    "median_from_counts",
    "normalized_frames",
    "rank_one_factors",
    "sample_plate",
    "segment_factors",
]

BACKGROUND_MODELS: Final = ("robust", "median", "svd")
"""Models of the background; ``svd`` is the plain truncated SVD (the notebook's)."""

FITTED_MODELS: Final = ("robust", "median")
"""Models fitted by this module; their factors are stored under the model's name."""

DEFAULT_MODEL: Final = "robust"
"""The model when none is named and no SVD factors or rank are asked for."""


def chosen_model(model: str | None, *, svd_options_given: bool) -> str:
    """The background model to use.

    ``model`` when given; else ``svd`` when SVD factors or a rank were named (they
    only make sense for it); else :data:`DEFAULT_MODEL`.

    Raises
    ------
    InvalidParameterError
        An unknown ``model``, or SVD options given with ``median`` or ``robust``.
    """
    if model is None:
        return "svd" if svd_options_given else DEFAULT_MODEL
    if model not in BACKGROUND_MODELS:
        raise InvalidParameterError(f"model must be one of {', '.join(BACKGROUND_MODELS)}, got {model!r}")
    if model != "svd" and svd_options_given:
        raise InvalidParameterError(
            f"factors and rank choose SVD factors, which the {model} model does not use;"
            " drop them, or choose the svd model"
        )
    return model


GAIN_SAMPLE_FRAMES: Final = 64
"""Frames, spread over the video, whose per-pixel median is the plate of the first gains.
Its error at a pixel, from the illumination and from objects on the sampled frames, is
the pixel's own; the median over 11,000 or more voting pixels of each frame washes it
out (measured: the same F to 0.001 with 0, 1 or 2 more rounds of refinement).  Memory:
that many frames of uint8 in one task (59 MB at 1280x720)."""
_BINS: Final = 16
_PLATE_BANDS: Final = 8
"""Bands of image rows :func:`sample_plate` sorts in separate tasks (threads work in parallel)."""
_COUNT_TILE_BYTES: Final = 1 << 21
"""uint8 frame values per tile of the counting kernel (2 MiB: 58,000 pixels of 36 frames)."""
_UINT8_SUM_FRAMES: Final = 255
"""Frames summed in uint8 at a time: a count of at most 255 cannot overflow."""


class RankOneBackground(NamedTuple):
    """A rank-1 background ``b g^T`` as SVD-style factors.

    Attributes
    ----------
    U : ndarray, shape (P, 1), float32
    s : ndarray, shape (1,), float32
    Vt : ndarray, shape (1, T), float32
    """

    U: npt.NDArray[np.float32]
    s: npt.NDArray[np.float32]
    Vt: npt.NDArray[np.float32]


def _counts_below_edges(
    values: npt.NDArray[np.uint8], *, n_bins: int, bin_starts: npt.NDArray[np.uint8] | None = None
) -> npt.NDArray[np.uint32]:
    """(n, P) uint8 frames -> (P, 16) counts per pixel of 16 bins, a tile of pixels at a time.

    Without ``bin_starts`` the bins are the coarse ones, ``value >> 4``.  With
    ``bin_starts`` (P,) the bins are the 16 values ``bin_starts[p] + j``: each tile is
    first mapped to ``min(value - bin_starts, 16)`` (the uint8 difference wraps around
    below the start, so one ``minimum`` puts both sides outside, in the uncounted 16).

    Each bin's count is the difference of two counts of frames below an edge, each
    a comparison of the tile with the edge and a sum over frames in uint8 (blocks of
    255 frames): numpy releases the GIL for both, so the worker's threads count in
    parallel, where ``np.bincount`` of ``pixel * 16 + bin`` holds it (2-3x faster
    per chunk on two threads, README).  Work: 16 comparisons and sums per value.
    Tiles hold about :data:`_COUNT_TILE_BYTES` of frames, so that each call's work
    outweighs its own cost under the GIL (with 2,048-pixel tiles two threads were
    slower than one).  Memory: a bool and a uint8 tile, and (17, tile) uint32 counts.
    """
    n_frames, n_pixels = values.shape
    edges = [_BINS * (j + 1) for j in range(n_bins)] if bin_starts is None else list(range(1, n_bins + 1))
    tile = min(n_pixels, max(1, _COUNT_TILE_BYTES // max(n_frames, 1)))
    out = np.empty((n_pixels, n_bins), dtype=np.uint32)
    below = np.empty((n_frames, tile), dtype=np.bool_)
    shifted = None if bin_starts is None else np.empty((n_frames, tile), dtype=np.uint8)
    cumulative = np.empty((n_bins + 1, tile), dtype=np.uint32)
    block_sum = np.empty(tile, dtype=np.uint8)
    for start in range(0, n_pixels, tile):
        width = min(tile, n_pixels - start)
        tile_values = values[:, start : start + width]
        if bin_starts is not None and shifted is not None:
            offsets = shifted[:, :width]
            np.subtract(tile_values, bin_starts[None, start : start + width], out=offsets)
            np.minimum(offsets, np.uint8(n_bins), out=offsets)
            tile_values = offsets
        counts_below = cumulative[:, :width]
        counts_below[0] = 0
        for index, edge in enumerate(edges, start=1):
            if edge > np.iinfo(np.uint8).max:  # every uint8 value is below 256
                counts_below[index] = n_frames
                continue
            is_below = below[:, :width]
            np.less(tile_values, np.uint8(edge), out=is_below)
            counts_below[index] = 0
            for first in range(0, n_frames, _UINT8_SUM_FRAMES):
                rows = is_below[first : first + _UINT8_SUM_FRAMES].view(np.uint8)
                np.add.reduce(rows, axis=0, out=block_sum[:width])
                counts_below[index] += block_sum[:width]
        np.subtract(counts_below[1:].T, counts_below[:-1].T, out=out[start : start + width])
    return out


def _coarse_block(block: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    return _counts_below_edges(block.reshape(block.shape[0], -1), n_bins=_BINS)


def _fine_block(block: npt.NDArray[np.uint8], coarse_bin: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    bin_starts = np.left_shift(coarse_bin.astype(np.uint8), 4)
    return _counts_below_edges(block.reshape(block.shape[0], -1), n_bins=_BINS, bin_starts=bin_starts)


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
        (T,): count the frames divided by these (:func:`normalized_frames`), each
        chunk divided in the task that counts it.  Lazy gains of the same frames
        (:func:`pipelines.frame_gains.frame_gains`) computed in the same graph share
        the counts' reads: the gains and the counts divided by them in one read.
    frames_per_task : int, optional
        One task counts consecutive chunks of at least this many frames into one
        partial (:func:`pipelines.chunk_groups.chunk_groups`); None: a chunk per task.

    Returns
    -------
    dask.array.Array
        (P, 16) uint32.  One read of the video; per task the group's chunks (with
        ``gains``, a float32 copy of one of them at a time) and a (P, 16) partial.
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
        (P, 16) uint32: column j counts the frames whose value is ``16 * coarse_bin + j``.
    """
    require_gray_video(frames)
    n_pixels = int(frames.shape[1]) * int(frames.shape[2])
    if coarse_bin.shape != (n_pixels,):
        raise InvalidParameterError(f"coarse_bin must have shape ({n_pixels},), got {coarse_bin.shape}")
    shared_bin = dask.delayed(np.asarray(coarse_bin, dtype=np.uint8), pure=True)  # one copy in the graph
    return _summed_counts(frames, _fine_block, shared_bin, gains=gains, frames_per_task=frames_per_task)


def _summed_counts(
    frames: da.Array,
    count_block: Callable[..., npt.NDArray[np.uint32]],
    *args: Any,
    gains: npt.NDArray[np.floating] | da.Array | None,
    frames_per_task: int | None,
) -> da.Array:
    """``count_block`` on every chunk of whole frames, summed per group of chunks, then in a tree: (P, 16)."""
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
    return sum_partials(partials, shape=(n_pixels, _BINS), dtype=np.uint32, in_place=True)


def _chunk_divisors(gains: npt.NDArray[np.floating] | da.Array, frame_chunks: tuple[int, ...]) -> list[Any]:
    """The divisors of each chunk of frames: numpy slices, or the delayed chunks of lazy gains."""
    n_frames = sum(frame_chunks)
    if isinstance(gains, da.Array):
        if gains.shape != (n_frames,):
            raise InvalidParameterError(f"gains must have shape ({n_frames},), got {gains.shape}")
        lazy = gains.rechunk((frame_chunks,)).map_blocks(
            _divisors_of, dtype=np.float32, meta=np.empty((0,), np.float32)
        )
        # the gains' own keys: their reads of the frames are the counts' reads, one per chunk
        return list(lazy.to_delayed(optimize_graph=False).ravel())
    values = _divisors(gains, n_frames=n_frames)
    bounds = np.cumsum((0, *frame_chunks))
    return [values[start:stop] for start, stop in pairwise(bounds)]


def _count_group(
    blocks: Sequence[npt.NDArray[np.uint8]],
    divisors: Sequence[npt.NDArray[np.float32]] | None,
    count_block: Callable[..., npt.NDArray[np.uint32]],
    *args: Any,
) -> npt.NDArray[np.uint32]:
    """The counts of consecutive chunks, one after the other, into one (P, 16) partial."""
    total: npt.NDArray[np.uint32] | None = None
    for index, block in enumerate(blocks):
        values = block if divisors is None else _divide_block(block, divisors[index][:, None, None])
        counts = count_block(values, *args)
        if total is None:
            total = counts
        else:
            np.add(total, counts, out=total)
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
    _require_frames_counted(np.asarray(coarse).sum(axis=1, dtype=np.int64), n_frames, what="coarse counts")
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
    0.7 s for cumulative sums over (P, 16) int64 copies, measured); this process runs
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
    in_bin = np.take_along_axis(np.asarray(coarse), coarse_bin[:, None].astype(np.intp), axis=1)[:, 0]
    _require_frames_counted(np.asarray(fine).sum(axis=1, dtype=np.int64), in_bin, what="fine counts")
    columns = np.ascontiguousarray(np.asarray(fine, dtype=np.uint32).T)  # (16, P): a bin per row
    offset = np.zeros(columns.shape[1], dtype=np.uint8)
    for value in columns[:-1]:
        frames_below += value
        offset += frames_below <= rank  # the median lies above this value
    median: npt.NDArray[np.uint8] = coarse_bin * np.uint8(_BINS) + offset
    return median


def _bin_and_below(
    coarse: npt.NDArray[np.uint32], *, rank: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint32]]:
    """Per pixel, the coarse bin holding the frame of ``rank``, and the frames in the bins below it."""
    columns = np.ascontiguousarray(np.asarray(coarse, dtype=np.uint32).T)  # (16, P): a bin per row
    frames_so_far = np.zeros(columns.shape[1], dtype=np.uint32)
    frames_below = np.zeros_like(frames_so_far)
    coarse_bin = np.zeros(columns.shape[1], dtype=np.uint8)
    for counts in columns[:-1]:
        frames_so_far += counts
        beyond = frames_so_far <= rank  # the frame of that rank lies in a later bin
        coarse_bin += beyond
        np.copyto(frames_below, frames_so_far, where=beyond)
    return coarse_bin, frames_below


def sample_plate(frames: da.Array, *, n_sample: int = GAIN_SAMPLE_FRAMES) -> da.Array:
    """Per pixel, the lower median of ``n_sample`` frames spread over the video; lazy.

    Returns
    -------
    dask.array.Array
        (P,) uint8, in :data:`_PLATE_BANDS` bands of image rows, one task each: the
        band's rows of the sampled frames, pixels made the contiguous axis and sorted
        (numpy's radix sort of uint8; 0.05 s per band of 720p against 0.15 s for a
        partition along the frames of the whole sample, measured).
    """
    require_gray_video(frames)
    rows = max(1, -(-int(frames.shape[1]) // _PLATE_BANDS))
    sample = frames[sample_frames(int(frames.shape[0]), n_sample)].rechunk({0: -1, 1: rows, 2: -1})
    return sample.map_blocks(
        _lower_median_block, drop_axis=0, dtype=np.uint8, meta=np.empty((0, 0), dtype=np.uint8)
    ).ravel()


def _lower_median_block(block: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """(n, y, x) uint8 -> (y, x): each pixel's value of rank ``(n - 1) // 2``."""
    per_pixel = np.ascontiguousarray(block.reshape(block.shape[0], -1).T)
    per_pixel.sort(axis=1, kind="stable")  # radix sort for uint8
    median: npt.NDArray[np.uint8] = per_pixel[:, (block.shape[0] - 1) // 2].reshape(block.shape[1:])
    return median


def normalized_frames(frames: da.Array, gains: npt.NDArray[np.floating]) -> da.Array:
    """The frames divided by their gains, rounded to uint8; lazy, the frames' shape and chunks.

    ``gains`` (T,) as from :func:`pipelines.frame_gains.frame_gains`; frames whose
    gain is below 1/16 are left as they are.  Per task one uint8 copy of a chunk of frames.  The counts
    divide the frames themselves when given ``gains``.
    """
    require_gray_video(frames)
    divisors = _divisors(gains, n_frames=int(frames.shape[0]))
    lazy_divisors = da.from_array(divisors, chunks=(frames.chunks[0],))
    return da.map_blocks(
        _divide_block,
        frames,
        lazy_divisors[:, None, None],
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), np.uint8),
    )


def _divisors(gains: npt.NDArray[np.floating], *, n_frames: int) -> npt.NDArray[np.float32]:
    """The gains as divisors: (T,) float32, 1 where a gain is below 1/16 (a fade to black)."""
    values = np.asarray(gains, dtype=np.float32).ravel()
    if values.shape != (n_frames,):
        raise InvalidParameterError(f"gains must have shape ({n_frames},), got {values.shape}")
    return _divisors_of(values)


def _divisors_of(gains: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    values = np.asarray(gains, dtype=np.float32)
    divisors: npt.NDArray[np.float32] = np.where(values >= MIN_GAIN, values, np.float32(1))
    return divisors


def _divide_block(block: npt.NDArray[np.uint8], divisors: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """(n, y, x) uint8 frames / (n, 1, 1) divisors, rounded and clipped to uint8.

    Each frame is divided by one number, so its 256 possible values are divided once
    into a table (the same float32 arithmetic as dividing the frame: the same bytes)
    and the frame is looked up in it with OpenCV's LUT: no float32 copy of the block.
    """
    frames = np.ascontiguousarray(block)
    out = np.empty_like(frames)
    if frames.size == 0:
        return out
    levels = np.arange(256, dtype=np.uint8)
    for index, divisor in enumerate(np.asarray(divisors, dtype=np.float32).reshape(-1)):
        table = levels / divisor
        np.rint(table, out=table)
        np.clip(table, 0, 255, out=table)
        cv2.LUT(frames[index], table.astype(np.uint8), dst=out[index])
    return out


def rank_one_factors(plate: npt.NDArray[np.generic], gains: npt.NDArray[np.floating]) -> RankOneBackground:
    """``plate`` (P,) and ``gains`` (T,) as factors U (P, 1), s (1,), Vt (1, T) of ``plate gains^T``.

    An all-black plate gives U of zeros and s = 0 (the background is black).
    """
    b = np.asarray(plate, dtype=np.float64).ravel()
    g = np.asarray(gains, dtype=np.float64).ravel()
    b_norm, g_norm = float(np.linalg.norm(b)), float(np.linalg.norm(g))
    u = b / b_norm if b_norm > 0 else np.zeros_like(b)
    vt = g / g_norm if g_norm > 0 else np.full_like(g, 1 / np.sqrt(max(g.size, 1)))
    return RankOneBackground(
        U=u[:, None].astype(np.float32),
        s=np.array([b_norm * g_norm], dtype=np.float32),
        Vt=vt[None, :].astype(np.float32),
    )


def segment_factors(
    plates: Sequence[npt.NDArray[np.generic]],
    gains: Sequence[npt.NDArray[np.floating]],
    segments: Sequence[tuple[int, int]],
    *,
    n_frames: int,
) -> RankOneBackground:
    """One rank-1 background per source segment as factors U (P, S), s (S,), Vt (S, T).

    Component i is ``plates[i] gains[i]^T`` on the frames ``segments[i]`` and zero
    elsewhere, so ``U diag(s) Vt`` gives each segment its own background (the columns
    of U are unit vectors, orthogonal only when the plates are).
    """
    parts = [rank_one_factors(plate, gain) for plate, gain in zip(plates, gains, strict=True)]
    u = np.concatenate([part.U for part in parts], axis=1)
    s_values = np.concatenate([part.s for part in parts])
    vt = np.zeros((len(parts), n_frames), dtype=np.float32)
    for index, ((start, stop), part) in enumerate(zip(segments, parts, strict=True)):
        vt[index, start:stop] = part.Vt[0]
    return RankOneBackground(U=u, s=s_values, Vt=vt)
