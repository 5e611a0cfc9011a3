"""Masks: which pixels of the foreground move, and the threshold that decides it.

``|foreground| > threshold`` per pixel, then per frame a 3 x 3 majority clean-up and
the holes of what remains filled, those open to one edge of the frame too
(:func:`pipelines.mask_cleanup.clean_masks`);
the threshold chosen from the data by :func:`auto_threshold` on a few frames
(:func:`sample_frames`), and raised, pixel by pixel, where the video itself varies
from frame to frame (leaves, water, an escalator; :func:`pixel_noise_scale` and
:func:`threshold_map`).  :func:`masks` is lazy over dask arrays; :func:`mask_block`
is the same rule on one numpy block, for code that streams blocks itself.

References
----------
.. [1] N. Otsu, "A threshold selection method from gray-level histograms",
   IEEE Trans. Systems, Man, and Cybernetics 9(1), 62-66, 1979.
.. [2] P. J. Rousseeuw and C. Croux, "Alternatives to the median absolute deviation",
   J. American Statistical Association 88(424), 1273-1283, 1993.
"""

from __future__ import annotations

import math
from typing import Final

import cv2
import dask.array as da
import numpy as np
import numpy.typing as npt

from pipelines.count_kernels import BINS, counts_below_edges
from pipelines.mask_cleanup import clean_masks
from pipelines.shapes import is_color, is_int
from storage.errors import InvalidParameterError

__all__ = [
    "AUTO_THRESHOLD_MIN",
    "AUTO_THRESHOLD_NOISE_FACTOR",
    "AUTO_THRESHOLD_OTSU_FRACTION",
    "AUTO_THRESHOLD_RULE",
    "MASK_VALUE",
    "NOISE_PAIRS",
    "PIXEL_NOISE_FACTOR",
    "auto_threshold",
    "checked_threshold",
    "mask_block",
    "masks",
    "noise_pair_frames",
    "noise_scale_of",
    "otsu_split",
    "pixel_noise_scale",
    "sample_frames",
    "threshold_map",
    "threshold_sample_stride",
]

AUTO_THRESHOLD_NOISE_FACTOR: Final = 3.0
""":func:`auto_threshold` never goes below this many robust noise deviations."""
AUTO_THRESHOLD_MIN: Final = 2.0
""":func:`auto_threshold` never goes below this many grey levels."""
AUTO_THRESHOLD_OTSU_FRACTION: Final = 0.5
""":func:`auto_threshold` is this fraction of Otsu's split of the foreground's magnitude."""
MASK_VALUE: Final = 255
"""Value of a foreground pixel in a mask (CDnet convention); background is 0."""

AUTO_THRESHOLD_RULE: Final = (
    "auto: half of Otsu's split, at least 3 robust sigmas (of Otsu's small class when"
    " 3 sigmas of the whole sample pass the split) and 2 grey levels,"
    " raised per pixel to 3 sigmas of its frame-to-frame change"
)
"""How :func:`auto_threshold` chooses, in words, as separations record it."""

PIXEL_NOISE_FACTOR: Final = 3.0
""":func:`threshold_map` raises a pixel's threshold to this many of its own noise sigmas."""
NOISE_PAIRS: Final = 64
"""Pairs of consecutive frames :func:`pixel_noise_scale` is measured on."""

_NOISE_BANDS: Final = 8
"""Bands of image rows :func:`noise_scale_of` splits the frame pairs into."""

_THRESHOLD_MAX_VALUES: Final = 1 << 22
""":func:`auto_threshold` uses at most this many values of its sample, a regular stride
of them (24 frames of 320x240 are 1.8 million; of 1280x720, 22 million, whose medians
and histogram took 0.9 s in the client while the cluster waited).  Sampling 4 million
values moves a median by about 1/2000 of the spread and Otsu's split by less than one of
its 256 bins."""
_MAD_TO_SIGMA: Final = 1.4826  # 1 / Phi^-1(3/4): MAD of a Gaussian times this is its sigma
_OTSU_BINS: Final = 256


def masks(
    foreground: da.Array, *, threshold: float | npt.NDArray[np.float32], cleanup: bool = True
) -> da.Array:
    """Mark the foreground pixels: ``|foreground| > threshold``, then clean up, lazily.

    Parameters
    ----------
    foreground : dask.array.Array
        Shape (frame, y, x) or (frame, y, x, 3), float (or int16 from storage).
    threshold : float or numpy.ndarray
        Grey levels, > 0; see :func:`auto_threshold` for a data-driven value.  Or one
        per pixel, shape (y, x) (see :func:`threshold_map`), the same for every frame.
    cleanup : bool
        Remove speckle and fill holes, in each frame separately.  First a 3 x 3 median
        filter (the frame's border replicated), that is a majority vote: a pixel is
        foreground when at least 5 of the 9 pixels around it are.  Isolated pixels and
        one- or two-pixel specks vanish, one-pixel holes and cracks close, objects keep
        their size; only their sharp convex corners lose a pixel.  (On the BMC 2012
        Video_003 and on synthetic scenes it never lowered the F-measure by more than
        0.01 and raised it by up to 0.13 at low thresholds; an opening then closing
        lost up to 0.06 at the automatic threshold, a closing then opening kept more
        noise.)  Then :func:`pipelines.mask_cleanup.fill_holes`: ground truth marks
        whole objects, and the parts of an object that look like the background behind
        it (a windscreen, a grey coat on a grey road) leave holes.  Measured after the
        majority vote on the robust background at the automatic threshold: +0.0004 to
        +0.010 on five synthetic scenes (the most where objects have half contrast),
        -0.0014 on Video_003 (0.8983 -> 0.8969).  A hole that opens onto one edge of the
        frame (an object the edge cuts) is filled too: see
        :func:`pipelines.mask_cleanup.fill_holes`, ``one_edge``.

    Returns
    -------
    dask.array.Array
        Shape (frame, y, x), uint8: 255 foreground, 0 background (the CDnet values).
        One chunk per frame chunk of ``foreground``, whole frames.  For color, a pixel
        is foreground when any channel exceeds the threshold.

    Raises
    ------
    InvalidParameterError
        A threshold that is not a positive number (or a map of another shape than a
        frame's, or with a value that is not), or a foreground of another shape.

    Notes
    -----
    Memory per task: one chunk of whole frames and a few boolean copies of it, and
    the threshold map, sent once to each worker.
    Frames are independent, so no overlap between chunks is needed.
    """
    fg = da.asarray(foreground)
    level = checked_threshold(threshold, frame_shape=tuple(int(n) for n in fg.shape[1:3]))
    color = is_color(fg)
    if fg.ndim != 3 and not color:
        raise InvalidParameterError(
            f"foreground must have shape (frame, y, x) or (frame, y, x, 3), got {tuple(fg.shape)}"
        )
    whole = fg.rechunk({axis: -1 for axis in range(1, fg.ndim)})
    return whole.map_blocks(
        mask_block,
        threshold=level,
        cleanup=bool(cleanup),
        dtype=np.uint8,
        drop_axis=3 if color else None,
        meta=np.empty((0, 0, 0), dtype=np.uint8),
    )


def sample_frames(n_frames: int, k: int) -> npt.NDArray[np.int64]:
    """Return ``min(k, n_frames)`` frame indices spread evenly over a video.

    The first and last frames are included (for k >= 2) and the indices are sorted
    and distinct.  Use them to compute a small sample of the foreground, e.g.
    ``foreground[indices].compute()``, for :func:`auto_threshold`.

    Raises
    ------
    InvalidParameterError
        ``n_frames`` or ``k`` is not a positive integer.
    """
    for name, value in (("n_frames", n_frames), ("k", k)):
        if not is_int(value) or value < 1:
            raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}")
    count = min(k, n_frames)
    indices = np.unique(np.rint(np.linspace(0, n_frames - 1, count)).astype(np.int64))
    return indices


def auto_threshold(foreground_sample: npt.ArrayLike) -> float:
    """Choose the mask threshold from a sample of the foreground.

    The rule::

        a = |foreground_sample|
        sigma = 1.4826 * median(|r - median(r)|)      # robust noise scale [2]_
        if 3 * sigma > otsu(a):                       # objects inflate sigma?
            low = r[a <= otsu(a)]                     # Otsu's small class
            if max(3 * mad_sigma(low), 2.0) < otsu(a):
                sigma = mad_sigma(low)
        threshold = max(otsu(a) / 2, 3 * sigma, 2.0)

    ``otsu(a)`` is Otsu's threshold [1]_ of the histogram of ``a`` (256 bins from 0 to
    ``max(a)``; the bin centre that maximises the between-class variance): it splits
    the residual into a "small" class (sensor noise, compression artefacts, faint
    ghosts that the low-rank background left) and a "large" class (the moving
    objects).  When nothing moves, ``a`` has a single mode and Otsu would split the
    noise itself near one sigma; the floor of 3 robust standard deviations (sigma
    from the median absolute deviation, which moving objects covering less than half
    the pixels do not inflate) keeps pure noise out of the mask, and 2 grey levels is
    the least that means anything for 8-bit video.

    When objects cover about half of the sampled pixels or more (a crowd, traffic
    filling the view, a close-up), the median absolute deviation measures the
    objects, not the noise: on a synthetic scene of 30 objects covering 55 % of the
    frames it gave 3 sigma = 320 grey levels, above any residual, and an empty mask
    (F = 0) where any threshold from 10 to 50 gives F = 0.98.  The sign is a noise
    floor above Otsu's split itself; sigma is then taken from Otsu's small class
    alone, provided that class's own floor (3 of its sigmas, at least 2 grey levels)
    lies below the split, i.e. the split does separate noise from objects.  Pure
    noise has a floor above its split too (Otsu splits a Gaussian's magnitudes near
    1 sigma) but keeps its sigma: its small class, truncated at about 1 sigma, has a
    robust sigma of about 0.65, and 3 of those (about 2 sigma) pass the split.  On
    Video_003 and the ten synthetic scenes the floor stays below half the split and
    nothing changes.

    Otsu alone splits the residual in the middle of the moving objects' contrast, so
    it drops their darker parts: on the BMC 2012 Video_003 it chose 57-61 grey
    levels (F = 0.84) where 25-30 is best (F = 0.90).  Half of Otsu's split (the 1/2
    is the one constant here, a round fraction, not fitted) chose 30 there with the
    robust background (F = 0.898, the best of any global threshold).  Measured in
    memory on the robust background of Video_003 and ten synthetic scenes
    (illumination drift, walkers who stop, swaying foliage, noise varying over the
    image, objects of 0.3-1 of full contrast), against the earlier half-way point
    between Otsu's split and 3 sigma, it was as good or better on every one: +0.001
    on Video_003, +0.010 to +0.018 where objects have a third of full contrast
    (where 4-6 grey levels would be best), within 0.0001 where any threshold from 15
    to 50 does as well.  0.4 would gain another 0.003-0.007 on those low-contrast
    scenes but lose 0.004 on Video_003; 0.45 is the best there (+0.0004) and loses
    0.003 on them.  On the backgrounds of a plain rank-1 SVD (``--model svd``), whose
    residual holds ghosts of the objects, the change was +0.003 on Video_003 and
    +0.006 to +0.014 on the low-contrast scenes, but -0.017 where walkers stop for
    30 % of the clip and -0.1 on a 64 x 48 scene whose three objects cover much of
    the frame: half of Otsu's split falls among the ghosts there.  A rule on sigma
    alone would need 8 sigma on that real video but 4 sigma on the synthetic scenes.

    Parameters
    ----------
    foreground_sample : array_like
        Foreground values (any shape, e.g. (frame, y, x) of a few frames chosen with
        :func:`sample_frames`), in grey levels.  Every value is checked; beyond 4
        million, a regular stride of them is used.  A numpy array: compute a dask sample
        first (this function never computes).

    Returns
    -------
    float
        Threshold in grey levels, >= 2.

    Raises
    ------
    InvalidParameterError
        The sample is a dask array, empty, or not finite.
    """
    if isinstance(foreground_sample, da.Array):
        raise InvalidParameterError(
            "auto_threshold needs the sample in memory, got a dask array; pass sample.compute()"
        )
    values = np.asarray(foreground_sample, dtype=np.float32).ravel()  # float64: 2x the time, same split
    if values.size == 0:
        raise InvalidParameterError("the foreground sample is empty; sample at least one frame")
    if not np.all(np.isfinite(values)):
        raise InvalidParameterError("the foreground sample holds NaN or infinite values")
    values = values[:: threshold_sample_stride(values.size)]
    magnitudes = np.abs(values)
    otsu = otsu_split(magnitudes)
    sigma = _mad_sigma(values)
    if AUTO_THRESHOLD_NOISE_FACTOR * sigma > otsu:  # is sigma inflated by the objects?
        small_class_sigma = _mad_sigma(values[magnitudes <= otsu])
        if max(AUTO_THRESHOLD_NOISE_FACTOR * small_class_sigma, AUTO_THRESHOLD_MIN) < otsu:
            sigma = small_class_sigma
    noise_floor = AUTO_THRESHOLD_NOISE_FACTOR * sigma
    return max(AUTO_THRESHOLD_OTSU_FRACTION * otsu, noise_floor, AUTO_THRESHOLD_MIN)


def threshold_sample_stride(n_values: int) -> int:
    """The stride :func:`auto_threshold` takes its values at, of a sample of ``n_values``.

    1 up to 4 million values (``_THRESHOLD_MAX_VALUES``), then the least stride that
    leaves at most that many.  A caller that slices a lazy sample at this stride,
    ``sample.reshape(-1)[::stride]``, before computing it gets the same threshold from
    the values ``auto_threshold`` would have used, and gathers a stride-th of the
    sample: for 24 frames of 720p, 15 MB instead of 88 MB.
    """
    return max(1, -(-int(n_values) // _THRESHOLD_MAX_VALUES))


def mask_block(
    block: npt.NDArray[np.floating], *, threshold: float | npt.NDArray[np.float32], cleanup: bool
) -> npt.NDArray[np.uint8]:
    """(n, y, x[, 3]) -> (n, y, x) uint8 0/255; ``threshold`` a number or a (y, x) map."""
    magnitude = np.abs(block)
    if magnitude.ndim == 4:  # color: any channel
        magnitude = magnitude.max(axis=3)
    mask = magnitude > threshold
    if cleanup and mask.size:
        mask = clean_masks(mask)
    out: npt.NDArray[np.uint8] = mask.astype(np.uint8) * np.uint8(MASK_VALUE)
    return out


def _mad_sigma(values: npt.NDArray[np.floating]) -> float:
    """The robust standard deviation of values: 1.4826 times their median absolute deviation."""
    return _MAD_TO_SIGMA * float(np.median(np.abs(values - np.median(values)))) if values.size else 0.0


def otsu_split(values: npt.NDArray[np.floating]) -> float:
    """Otsu's threshold of non-negative values: the bin centre that best splits them."""
    top = float(values.max())
    if top <= 0:
        return 0.0
    counts, edges = np.histogram(values, bins=_OTSU_BINS, range=(0.0, top))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts, dtype=np.float64)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(centres[int(np.argmax(between))])


def noise_pair_frames(n_frames: int, k: int = NOISE_PAIRS) -> npt.NDArray[np.int64]:
    """First frames t of up to ``k`` pairs (t, t + 1) spread over a video; empty for one frame.

    Read frames ``t`` and ``t + 1`` and pass them to :func:`pixel_noise_scale`.
    """
    if n_frames < 2:
        return np.zeros(0, dtype=np.int64)
    return sample_frames(n_frames - 1, k)


def pixel_noise_scale(first: npt.ArrayLike, second: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Each pixel's noise sigma, from its change between consecutive frames.

    ``sigma_p = 1.4826 / sqrt(2) * median_n |second[n, p] - first[n, p]|`` over the
    n pairs: for Gaussian noise of sigma s on a still pixel this is s (the difference
    of two frames has sigma ``s * sqrt(2)``).  Swaying leaves, water or an escalator
    change a lot from one frame to the next, and get a large sigma.  A person who
    stands still for most of the clip does not: the frames differ only when they
    arrive and leave, so the median ignores them, as it ignores anything that moves
    over a pixel in fewer than half of the pairs.  (A robust scale of the residual
    over time, by contrast, takes a person who stands for a third of the clip as
    noise there: measured on synthetic scenes it lost up to 0.14 of F.)

    Parameters
    ----------
    first, second : array_like
        Shapes (n, y, x) or (n, y, x, 3), frames t and t + 1 of n pairs (see
        :func:`noise_pair_frames`), any numeric dtype, n >= 1.

    Returns
    -------
    numpy.ndarray
        Shape (y, x), float32, grey levels; for colour the largest channel's.

    Memory: about 2 bytes per value of ``first`` for uint8 frames (12 for others).
    Time: for uint8 frames, 16 comparisons per value and a median over n for the
    pixels that change by 16 grey levels or more in half the pairs; otherwise a median
    over n per pixel.
    """
    a, b = np.asarray(first), np.asarray(second)
    if a.shape != b.shape or a.ndim not in (3, 4) or a.shape[0] < 1:
        raise InvalidParameterError(
            f"pixel_noise_scale needs two (n, y, x[, 3]) arrays of one shape, got {a.shape} and {b.shape}"
        )
    if a.dtype == np.uint8 and b.dtype == np.uint8:  # exact in uint8: a quarter of the bytes
        return _change_noise_scale(_frame_change(a, b))
    change = np.abs(b.astype(np.float32) - a.astype(np.float32))
    # pairs last and contiguous: numpy's median partitions along memory, 2x faster
    median = np.median(np.ascontiguousarray(np.moveaxis(change, 0, -1)), axis=-1)
    return _sigma_of_median_change(median)


def _sigma_of_median_change(median: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Per-pixel median change (y, x[, 3]) -> noise sigma (y, x), the largest channel's."""
    scale = median * (_MAD_TO_SIGMA / math.sqrt(2.0))
    if scale.ndim == 3:
        scale = scale.max(axis=2)
    return np.asarray(scale, dtype=np.float32)


def _median_of_small_values(values: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
    """(n, P) uint8 -> each column's median, exactly ``np.median(values, axis=0)``.

    Frame-to-frame changes are mostly a few grey levels: each pixel's counts of the
    values 0-15 (:func:`pipelines.count_kernels.counts_below_edges`, which releases
    the GIL) place its two middle values when they are below 16, and ``np.median``
    takes the other columns (swaying leaves, passers-by).  About a third of the time
    of ``np.median`` over every column, measured on 64 pairs of 720p frames.
    """
    n_values, n_pixels = values.shape
    counts = counts_below_edges(values, n_bins=BINS, bin_starts=np.zeros(n_pixels, dtype=np.uint8))
    lower_rank, upper_rank = (n_values + 1) // 2, n_values // 2 + 1  # 1-based middle ranks
    at_most = np.zeros(n_pixels, dtype=np.uint32)  # values <= v, v = 0, 1, ...
    lower = np.zeros(n_pixels, dtype=np.uint8)  # the value of that rank, or BINS past the counts
    upper = np.zeros(n_pixels, dtype=np.uint8)
    for value in range(BINS):  # row by row: numpy's cumsum down 16 long rows is 20x slower
        at_most += counts[value]
        lower += at_most < lower_rank
        upper += at_most < upper_rank
    median: npt.NDArray[np.float64] = (lower + upper.astype(np.float64)) / 2.0
    large = np.flatnonzero(upper >= BINS)
    if large.size:
        median[large] = np.median(np.ascontiguousarray(values[:, large].T), axis=-1)
    return median


def noise_scale_of(frames: da.Array, firsts: npt.NDArray[np.int64]) -> da.Array:
    """:func:`pixel_noise_scale` of the pairs (t, t + 1), t in ``firsts``, of a video; lazy.

    Each pair's change ``|frame t+1 - frame t|`` (uint8) is taken where the frames
    are, then the changes are regrouped in bands of image rows, one task per band on
    the workers: the caller receives the (y, x) float32 scale, not the frames.  (One
    regrouping, of the changes, rather than one of each frame of the pairs: half the
    bytes regrouped, and 90 tasks instead of 112 for 64 pairs of 341 frames.)  Memory
    per task: the band's rows of the ``len(firsts)`` changes.
    """
    rows = max(1, -(-int(frames.shape[1]) // _NOISE_BANDS))
    first = frames[firsts]
    second = frames[firsts + 1].rechunk(first.chunks)
    change = da.map_blocks(_frame_change, first, second, dtype=np.uint8)
    return da.map_blocks(
        _change_noise_scale,
        change.rechunk({0: -1, 1: rows, 2: -1}),
        drop_axis=0,
        dtype=np.float32,
        meta=np.empty((0, 0), np.float32),
    )


def _frame_change(first: npt.NDArray[np.uint8], second: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """``|second - first|`` of (n, y, x[, 3]) uint8 frames, in uint8 (exact: never wraps)."""
    n = first.shape[0]
    change = cv2.absdiff(first.reshape(n, -1), second.reshape(n, -1))
    return np.asarray(change, dtype=np.uint8).reshape(first.shape)


def _change_noise_scale(change: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """(n, y, x[, 3]) uint8 changes -> (y, x) float32 sigma, as :func:`pixel_noise_scale`."""
    median = _median_of_small_values(change.reshape(change.shape[0], -1)).reshape(change.shape[1:])
    return _sigma_of_median_change(median)


def threshold_map(threshold: float, noise_scale: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Per-pixel thresholds: ``max(threshold, PIXEL_NOISE_FACTOR * noise_scale)``, (y, x).

    The global threshold where a pixel is as still as the rest of the image; above
    it where the pixel itself varies more (3 sigmas: a still pixel's noise passes it
    in 0.3 % of frames, and the 3 x 3 majority clean-up removes such lone pixels).
    Measured in memory on stored factors (F on truth frames, 3 x 3 clean-up; the
    global threshold by :func:`auto_threshold`): a synthetic scene with 15 % of
    swaying foliage and objects of half contrast 0.949 -> 0.961 (5 sigmas: 0.934; 8:
    0.917; through ``vidsvd run`` and ``evaluate``, 0.948 -> 0.958); BMC 2012
    Video_003 0.8985 -> 0.8985; a synthetic scene whose walkers stand for 30 % of the
    clip 0.9679 -> 0.9679.
    """
    scale = np.asarray(noise_scale, dtype=np.float32)
    raised: npt.NDArray[np.float32] = np.maximum(
        np.float32(threshold), np.float32(PIXEL_NOISE_FACTOR) * scale
    )
    return raised


def checked_threshold(
    threshold: float | npt.NDArray[np.float32], *, frame_shape: tuple[int, ...]
) -> float | npt.NDArray[np.float32]:
    """The threshold as a float or a float32 (y, x) map, or a one-line error.

    Raises
    ------
    InvalidParameterError
        A threshold that is not a positive finite number, or a map of another shape
        than ``frame_shape[:2]`` or with a value that is not.
    """
    if isinstance(threshold, np.ndarray):
        level = np.asarray(threshold, dtype=np.float32)
        if level.shape != frame_shape[:2] or not (np.all(np.isfinite(level)) and np.all(level > 0)):
            raise InvalidParameterError(
                f"a threshold map must have a frame's shape {frame_shape[:2]} and positive finite "
                f"values, got shape {level.shape}"
            )
        return level
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float | np.integer | np.floating)
        or not (math.isfinite(threshold) and threshold > 0)
    ):
        raise InvalidParameterError(f"threshold must be a positive number of grey levels, got {threshold!r}")
    return float(threshold)
