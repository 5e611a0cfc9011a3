"""Cast shadows: the ground darkened by one ratio, taken out of the masks by default.

In gray, a cast shadow is the background times a factor below one: where the sun is
blocked, ``frame = ratio * background`` give or take the noise, with one ratio for the
whole scene (one sun, one kind of ground).  CDnet and most ground truth mark shadows as
background; ``|frame - background| > threshold`` marks them as foreground as soon as
the ratio is below ``1 - threshold / background``.

The rule (``separate`` and ``run`` by default; ``--no-shadows`` keeps shadows), in four parts:

1. :func:`ratio_counts` then :func:`shadow_ratio_of`: the scene's shadow ratio is the
   commonest ``frame / background`` of the masked pixels darker than their background,
   in :data:`RATIO_BINS` bins of 0.01 over [0.30, 1.00), on a sample of frames.  Only a
   mode at least :data:`EDGE_MARGIN` inside that range counts: a mode at its lower end
   is dark objects (their ratios pile up in the first bin), one at its upper end is
   noise barely above the threshold.
2. :func:`shadow_candidates`: pixels within :data:`RATIO_BAND` of that ratio, on a
   background of at least :data:`MIN_BACKGROUND` grey levels (on darker ground a ratio
   is mostly noise).
3. :func:`drop_shadows`: candidates leave a frame's mask only where they show the
   ground's own pattern darkened: over each connected region of the masked pixels of
   the candidates' closing (:data:`CLOSING_SIZE`), the least-squares slope of the frame
   on the background is at least :data:`SLOPE_SHARE` of the ratio, by
   :data:`SLOPE_SIGMAS` standard errors, and either explains at least
   :data:`MIN_EXPLAINED` of the frame's variance there or leaves a residual of at most
   :data:`NOISE_RESIDUAL` times the frame's noise (:func:`frame_noise_sigma`).  A shadow keeps the texture of
   what it falls on (``frame = ratio * background``); an object has its own, so its
   slope on the background is near 0, even where its gray happens to match the
   ratio, and its own pattern is more than noise.  On weakly textured ground, such as
   asphalt, the noise hides most of a shadow's pattern, but what it leaves is noise.
   There the slope also comes out short of the ratio (the plate's own errors and the
   encoder weigh on a pattern of a grey level or two), so a region also leaves when it
   is the ground times about the ratio within the noise (its own ratio within
   :data:`RATIO_BAND`, its frame within :data:`NOISE_RESIDUAL` noise sigmas of that
   ratio times the background) and follows the ground's pattern at all (a slope of at
   least :data:`RATIO_FIT_SLOPE_SHARE` of the ratio, by :data:`SLOPE_SIGMAS` standard
   errors).  On flat ground the tests cannot tell, and the pixels stay.  What casts the
   shadow need not be in the mask: a building's shade or a caster outside the view
   leaves as a passer-by's shadow does.
4. :func:`clean_without_shadows`: the shadows' soft edges leave too, and the clean-up
   fills back only what lies inside objects (:mod:`pipelines.shadow_edges`).

Measured with ``vidsvd separate`` and ``--no-shadows`` on synthetic scenes whose objects cast
shadows of 0.3-0.6 (on textured and on weakly textured ground), on scenes of flat
objects without shadows and on the real videos here (README, "Background models").
The real videos' shares quoted below for the closing, the slope share and R^2 were
measured by a script on 40 frames of each, at a ratio measured on those frames (0.46
for the shop, where ``separate`` finds 0.83); the README gives ``separate``'s own.
"""

from __future__ import annotations

import math
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from pipelines.masks import MASK_VALUE, mask_block
from pipelines.shadow_edges import EDGE_RULE, cleaned_without_shadows, without_edges
from storage.errors import InvalidParameterError

__all__ = [
    "CLOSING_SIZE",
    "EDGE_MARGIN",
    "MIN_BACKGROUND",
    "MIN_CANDIDATES",
    "MIN_EXPLAINED",
    "MIN_SAMPLE_PIXELS",
    "NOISE_MEASURE",
    "NOISE_RESIDUAL",
    "NOISE_SAMPLE_PIXELS",
    "RATIO_BAND",
    "RATIO_BINS",
    "RATIO_FIT_SLOPE_SHARE",
    "RATIO_RANGE",
    "SHADOW_RULE",
    "SLOPE_SHARE",
    "SLOPE_SIGMAS",
    "clean_without_shadows",
    "drop_shadows",
    "frame_noise_sigma",
    "mask_block_without_shadows",
    "ratio_counts",
    "recorded_rule",
    "rounded_background",
    "shadow_candidates",
    "shadow_ratio_of",
]

RATIO_RANGE: Final = (0.30, 1.00)
"""Ratios ``frame / background`` counted for the scene's shadow ratio."""
RATIO_BINS: Final = 70
"""Bins of :func:`ratio_counts` over :data:`RATIO_RANGE`: 0.01 each."""
EDGE_MARGIN: Final = 0.05
"""A mode this close to either end of :data:`RATIO_RANGE` is not a shadow ratio."""
RATIO_BAND: Final = 0.05
"""Candidates are within this of the shadow ratio: about two noise sigmas of a ratio
for a noise of 3 grey levels on ground of 120 (chosen on the shadow scenes: 0.08 gave
the same F within 0.01, and took more of flat objects)."""
MIN_BACKGROUND: Final = 16.0
"""Grey levels of background below which no pixel is a shadow candidate."""
CLOSING_SIZE: Final = 5
"""Side of the square with which a frame's candidates are closed (OpenCV's
``MORPH_CLOSE``) into the regions that are tested: gaps of up to four pixels between
candidates are filled, so that a test sees a whole region, not only the pixels the
ratio picked (those match ``ratio * background`` by construction: on flat objects
their slope on the background was 0.24-0.38 where the ratio was 0.45-0.71).  Chosen
on the scenes of the README: 3 also took 1.7 % of the shop's mask pixels and 1.4 % of
the motorway's (5: 0.1 % and 0.9 %) for up to 0.01 more on the shadow scenes; 7 lost
up to 0.02 on those and took no less on the real videos."""
MIN_CANDIDATES: Final = 20
"""Candidates a region must hold for its shadow to be tested: fewer give no slope."""
SLOPE_SHARE: Final = 0.7
"""A region's slope of the frame on the background must reach this share of the ratio.
Closed shadow candidates on the synthetic scenes had slopes of 0.95-0.99 times the
ratio (medians), those of flat objects 0.09-0.14 times; measured again on the regions
truth marks as shadow, after the scenes' h264 encoding, 0.72-0.93 times (a quarter
under 0.40-0.85).  At 0.5 the shop's visitors lost 1.3 % of their mask pixels (0.1 % at
0.7); measured later, 0.5 took their dark legs and a truck's shaded side panel out of
the masks for 0.025-0.048 more F on the shadow scenes, 0.6 less of both for 0.015-0.024
(README); at 0.8 the shadow scenes lost up to 0.014 of F."""
SLOPE_SIGMAS: Final = 2.0
"""By how many standard errors of the slope (from the region's residual, as if its
pixels were independent) it must exceed :data:`SLOPE_SHARE` of the ratio.  At 1 (0)
the eight shadow scenes of the README gained 0.011-0.044 (0.021-0.084) of F, and the
dark legs of the shop's visitors and the body of a silver car on the motorway left the
masks (README, "Background models")."""
MIN_EXPLAINED: Final = 0.3
"""Share of the frame's variance over a region that the background's slope must
explain (R^2).  Inside the shop's visitors and the motorway's cars, closed candidates
that passed the slope test had R^2 of 0.04-0.4; synthetic shadows' medians were
0.46-0.79.  At 0.2 the real videos lost 1-2 % more of their mask pixels for up to
0.01 more on the shadow scenes."""
NOISE_RESIDUAL: Final = 1.5
"""Or the residual of a region's fit has a standard deviation of at most this many
noise sigmas of its frame (:func:`frame_noise_sigma`).  On ground whose texture is
about the noise (a road: the plates of the real roads here vary by 1-3 grey levels
over 15 pixels), a shadow's R^2 stays below :data:`MIN_EXPLAINED`, while an object's
own pattern leaves a residual far above the noise.  Chosen on synthetic scenes with
such ground (shadows of 0.4, ground varying by 0.6-1.9 grey levels): F rose by
0.014-0.044, and on the real videos here the share of ``vidsvd separate``'s mask
pixels taken out moved from 1.5 % to 2.7 % on the car park (its cars' shadows on the
asphalt) and by at most 0.1 % elsewhere.  1.0 gained less (0.850, 0.876, 0.948 on
the weak grounds against 0.855, 0.886, 0.955) and took 2.4 % of the car park; 2.0 gained
up to 0.004 more and took more of the real videos (2.9 % of the car park, 1.4 % of the
motorway against 1.3 %), whose pixels have no truth: 1.5 is the careful one."""
RATIO_FIT_SLOPE_SHARE: Final = 0.35
"""Or a region is the ground times its own ratio, that ratio within :data:`RATIO_BAND` of
the scene's and its frame within :data:`NOISE_RESIDUAL` noise sigmas of it, and its
slope on the background reaches this share of the ratio by :data:`SLOPE_SIGMAS`
standard errors.  The large shadow regions of a synthetic road (ground of contrast
0.25, shadows of 0.4) had slopes of 0.37-0.85 at a ratio of 0.60, standard errors of
0.02-0.05, and scattered by less than the noise; flat pale objects over ground of
contrast 0.15, whose grey gave the scene a ratio of 0.78, had slopes of -0.09 to 0.23.  At 0.35
the shadow scenes gained 0.012-0.071 of F and the scenes without shadows none; at 0.2
they gained up to 0.02 more while those lost up to 0.0007, and at 0 one lost 0.05
(README, "Background models")."""
NOISE_SAMPLE_PIXELS: Final = 16_384
"""Pixels of a frame, at most, from which :func:`frame_noise_sigma` measures its noise."""
NOISE_MEASURE: Final = (
    f"sqrt(pi/2) x the mean absolute deviation from its median of frame - background over the"
    f" unmasked pixels on a background of {MIN_BACKGROUND:g} or more, on a grid of every n-th row"
    f" and column of at most {NOISE_SAMPLE_PIXELS} pixels, none below {MIN_CANDIDATES} of them"
)
"""How :func:`frame_noise_sigma` measures a frame's noise, in words (part of :data:`SHADOW_RULE`)."""
MIN_SAMPLE_PIXELS: Final = 500
"""Darker masked pixels the sample must hold for a shadow ratio to be measured."""

SHADOW_RULE: Final = (
    f"cast shadows removed: pixels within {RATIO_BAND:g} of the scene's commonest ratio to the"
    f" background (of {MIN_BACKGROUND:g} grey levels or more), where their region"
    f" ({CLOSING_SIZE}x{CLOSING_SIZE} closing,"
    f" {MIN_CANDIDATES} or more of them) shows the background's pattern darkened (slope >="
    f" {SLOPE_SHARE:g} of the ratio by {SLOPE_SIGMAS:g} standard errors, and R^2 >= {MIN_EXPLAINED:g}"
    f" or a residual of at most {NOISE_RESIDUAL:g} noise sigmas of the frame; or the region's own"
    f" ratio within {RATIO_BAND:g} of the scene's, the frame within {NOISE_RESIDUAL:g} noise sigmas"
    f" of that ratio times the background and a slope >= {RATIO_FIT_SLOPE_SHARE:g} of the ratio by"
    f" {SLOPE_SIGMAS:g} standard errors; noise sigma = {NOISE_MEASURE}), {EDGE_RULE}"
)
"""The rule in words, as separations that applied it record it."""


def recorded_rule(*, shadows: bool) -> str:
    """The ``shadow_rule`` a separation made now records: :data:`SHADOW_RULE`, or "" when shadows stay."""
    return SHADOW_RULE if shadows else ""


def ratio_counts(
    frames: npt.NDArray[np.number],
    background: npt.NDArray[np.floating],
    above: npt.NDArray[np.bool_],
) -> npt.NDArray[np.int64]:
    """Histogram of ``frames / background`` over the masked pixels darker than their background.

    Parameters
    ----------
    frames, background : numpy.ndarray
        Same shape, any (frames in grey levels, background float).
    above : numpy.ndarray
        Same shape, bool: the pixels over the threshold (before any clean-up).

    Returns
    -------
    numpy.ndarray
        (:data:`RATIO_BINS`,) int64 counts over :data:`RATIO_RANGE`; pixels on a
        background below :data:`MIN_BACKGROUND` are not counted.  Sums of several
        blocks' counts are the counts of their union.
    """
    if not frames.shape == background.shape == above.shape:
        raise InvalidParameterError(
            f"frames {frames.shape}, background {background.shape} and mask {above.shape} must have one shape"
        )
    ground = np.asarray(background, dtype=np.float32)
    counted = above & (ground >= MIN_BACKGROUND) & (frames < ground)
    ratios = np.asarray(frames, dtype=np.float32)[counted] / ground[counted]
    counts, _ = np.histogram(ratios, bins=RATIO_BINS, range=RATIO_RANGE)
    return counts.astype(np.int64)


def shadow_ratio_of(counts: npt.ArrayLike, *, min_pixels: int = MIN_SAMPLE_PIXELS) -> float | None:
    """The scene's shadow ratio from :func:`ratio_counts`, or None when it shows none.

    The centre of the fullest bin, when it lies at least :data:`EDGE_MARGIN` inside
    :data:`RATIO_RANGE` and the counts hold at least ``min_pixels`` pixels
    (:data:`MIN_SAMPLE_PIXELS`, or its share for counts of a subsample).
    """
    histogram = np.asarray(counts, dtype=np.int64).reshape(-1)
    if histogram.shape != (RATIO_BINS,):
        raise InvalidParameterError(f"need {RATIO_BINS} ratio counts, got {histogram.shape[0]}")
    if int(histogram.sum()) < min_pixels:
        return None
    low, high = RATIO_RANGE
    width = (high - low) / RATIO_BINS
    ratio = low + (int(np.argmax(histogram)) + 0.5) * width
    if not low + EDGE_MARGIN <= ratio <= high - EDGE_MARGIN:
        return None
    return round(ratio, 4)


def shadow_candidates(
    frames: npt.NDArray[np.number], background: npt.NDArray[np.floating], *, ratio: float
) -> npt.NDArray[np.bool_]:
    """Pixels that look like the background times ``ratio``: bool, the frames' shape.

    ``|frame - ratio * background| <= RATIO_BAND * background`` on a background of at
    least :data:`MIN_BACKGROUND` grey levels.  Memory: two float32 copies of the input.
    """
    if not 0.0 < ratio < 1.0:
        raise InvalidParameterError(f"a shadow ratio is in (0, 1), got {ratio}")
    ground = np.asarray(background, dtype=np.float32)
    distance = np.abs(np.asarray(frames, dtype=np.float32) - np.float32(ratio) * ground)
    candidates: npt.NDArray[np.bool_] = (distance <= np.float32(RATIO_BAND) * ground) & (
        ground >= MIN_BACKGROUND
    )
    return candidates


def drop_shadows(
    mask: npt.NDArray[np.bool_],
    candidates: npt.NDArray[np.bool_],
    *,
    frames: npt.NDArray[np.number],
    background: npt.NDArray[np.number],
    ratio: float,
) -> npt.NDArray[np.bool_]:
    """(n, y, x) masks without their shadow candidates, where they show the ground's pattern darkened.

    Per frame, the candidates are closed (:data:`CLOSING_SIZE`) and the closing's
    masked pixels split into 8-connected regions.  A region's candidates leave the mask
    when it holds at least :data:`MIN_CANDIDATES` of them and its pixels show the
    background's pattern darkened (:func:`_darkened_ground`); a region with a pattern of
    its own, or none at all, stays whole.  Candidates of a dark part of an object that
    touch its shadow join the shadow's region, and leave with it when the shadow's
    pixels carry the fit.  Apply it before the clean-up, which then fills what the
    removal left enclosed.

    Parameters
    ----------
    mask, candidates : numpy.ndarray
        (n, y, x) bool: the pixels over the threshold, and :func:`shadow_candidates`.
    frames, background : numpy.ndarray
        (n, y, x), in grey levels: the frames and their background (any real dtype;
        a background rounded to uint8 tests the same within its rounding).
    ratio : float
        The scene's shadow ratio.

    O(y x) per frame; memory: one int32 label image, the closing's uint8 image and the
    noise's sample (:func:`frame_noise_sigma`).
    """
    if mask.ndim != 3 or not mask.shape == candidates.shape == frames.shape == background.shape:
        raise InvalidParameterError(
            f"drop_shadows needs (frame, y, x) masks, candidates, frames and background of one shape,"
            f" got {mask.shape}, {candidates.shape}, {frames.shape} and {background.shape}"
        )
    kept = np.array(mask, dtype=np.bool_)
    square = np.ones((CLOSING_SIZE, CLOSING_SIZE), dtype=np.uint8)
    for frame in range(kept.shape[0]):
        shadowy = kept[frame] & candidates[frame]
        if np.count_nonzero(shadowy) < MIN_CANDIDATES:
            continue
        closed = cv2.morphologyEx(shadowy.view(np.uint8), cv2.MORPH_CLOSE, square).view(np.bool_)
        closed &= kept[frame]
        n_regions, regions = cv2.connectedComponents(closed.view(np.uint8), connectivity=8)
        shadow_regions = regions[shadowy]
        darkened = np.bincount(shadow_regions, minlength=n_regions) >= MIN_CANDIDATES
        darkened[0] = False  # outside every region
        if not darkened.any():
            continue
        inside = regions > 0
        darkened &= _darkened_ground(
            np.asarray(regions[inside], dtype=np.intp),
            np.asarray(frames[frame][inside], dtype=np.float64),
            np.asarray(background[frame][inside], dtype=np.float64),
            n_labels=n_regions,
            ratio=ratio,
            noise_sigma=frame_noise_sigma(frames[frame], background[frame], kept[frame]),
        )
        leaving = darkened[shadow_regions]  # of the shadowy pixels, in order
        rows, cols = np.nonzero(shadowy)
        kept[frame][rows[leaving], cols[leaving]] = False
    return kept


def _darkened_ground(
    labels: npt.NDArray[np.intp],
    frame: npt.NDArray[np.float64],
    ground: npt.NDArray[np.float64],
    *,
    n_labels: int,
    ratio: float,
    noise_sigma: float,
) -> npt.NDArray[np.bool_]:
    """Per label, whether its pixels show the background's pattern darkened by about ``ratio``.

    The least-squares fit ``frame = a + slope * ground`` over each label's pixels (1-d
    arrays of one length): True where ``slope - SLOPE_SHARE * ratio`` is at least
    :data:`SLOPE_SIGMAS` standard errors, and R^2 is at least :data:`MIN_EXPLAINED` or
    the residual's standard deviation at most :data:`NOISE_RESIDUAL` times
    ``noise_sigma`` (0: no such test).  Also True where the label's own ratio
    ``q = mean(frame) / mean(ground)`` is within :data:`RATIO_BAND` of ``ratio``, the
    standard deviation of ``frame - q * ground`` is at most :data:`NOISE_RESIDUAL` times
    ``noise_sigma`` and ``slope - RATIO_FIT_SLOPE_SHARE * ratio`` is at least
    :data:`SLOPE_SIGMAS` standard errors.  A label whose ground or frame does not vary
    is False.  Returns (n_labels,) bool.
    """

    def sums(weights: npt.NDArray[np.float64] | None) -> npt.NDArray[np.float64]:
        return np.bincount(labels, weights=weights, minlength=n_labels).astype(np.float64)

    count = np.maximum(sums(None), 1.0)
    mean_f, mean_g = sums(frame) / count, sums(ground) / count
    var_f = sums(frame * frame) / count - mean_f**2
    var_g = sums(ground * ground) / count - mean_g**2
    cov = sums(frame * ground) / count - mean_f * mean_g
    varies = (var_g > _TINY_VARIANCE) & (var_f > _TINY_VARIANCE)
    var_g, var_f = np.where(varies, var_g, 1.0), np.where(varies, var_f, 1.0)
    slope = cov / var_g
    residual = np.maximum(var_f - slope * cov, 0.0)
    standard_error = np.sqrt(residual / (count * var_g))
    explained = slope * cov / var_f
    within_noise = (NOISE_RESIDUAL * noise_sigma) ** 2 if noise_sigma > 0 else -1.0
    pattern_kept = (explained >= MIN_EXPLAINED) | (residual <= within_noise)

    def slope_reaches(share: float) -> npt.NDArray[np.bool_]:
        reached: npt.NDArray[np.bool_] = slope - share * ratio >= SLOPE_SIGMAS * standard_error
        return reached

    own_ratio = mean_f / np.maximum(mean_g, MIN_BACKGROUND)
    scatter = var_f - 2.0 * own_ratio * cov + own_ratio**2 * var_g  # of frame - own_ratio * ground
    ratio_fit = (
        (np.abs(own_ratio - ratio) <= RATIO_BAND)
        & (scatter <= within_noise)
        & slope_reaches(RATIO_FIT_SLOPE_SHARE)
    )
    passed: npt.NDArray[np.bool_] = varies & ((slope_reaches(SLOPE_SHARE) & pattern_kept) | ratio_fit)
    return passed


def frame_noise_sigma(
    frame: npt.NDArray[np.number], background: npt.NDArray[np.number], mask: npt.NDArray[np.bool_]
) -> float:
    """The noise of one frame, in grey levels: how its unmasked pixels scatter about the background.

    ``sqrt(pi / 2)`` times the mean absolute deviation of ``frame - background`` from
    its median (a Gaussian's sigma), over the pixels outside ``mask`` on a background
    of at least :data:`MIN_BACKGROUND`, on a grid of every n-th row and column that
    holds at most :data:`NOISE_SAMPLE_PIXELS` pixels (:data:`NOISE_MEASURE`).  A mean,
    not a median, of the deviations: whole grey levels would make a median jump by a
    factor of two.  The mask's threshold bounds the deviations counted.

    Parameters
    ----------
    frame, background : numpy.ndarray
        (y, x), in grey levels.
    mask : numpy.ndarray
        (y, x): the pixels over the threshold (bool, or nonzero values).

    Returns
    -------
    float
        The sigma, or 0.0 when fewer than :data:`MIN_CANDIDATES` pixels are counted.

    Memory: a few float32 arrays of the grid's size, at most :data:`NOISE_SAMPLE_PIXELS`.
    """
    if not frame.shape == background.shape == mask.shape or frame.ndim != 2:
        raise InvalidParameterError(
            f"frame_noise_sigma needs (y, x) frame, background and mask of one shape,"
            f" got {frame.shape}, {background.shape} and {mask.shape}"
        )
    step = _grid_step(frame.shape)
    ground = np.asarray(background[::step, ::step], dtype=np.float32)
    counted = ~np.asarray(mask[::step, ::step], dtype=np.bool_) & (ground >= MIN_BACKGROUND)
    if np.count_nonzero(counted) < MIN_CANDIDATES:
        return 0.0
    difference = np.asarray(frame[::step, ::step], dtype=np.float32)[counted] - ground[counted]
    deviation = np.abs(difference - np.median(difference))
    return float(math.sqrt(math.pi / 2) * deviation.mean())


def _grid_step(shape: tuple[int, ...]) -> int:
    """The least n for which every n-th row and column of ``shape`` is at most :data:`NOISE_SAMPLE_PIXELS`."""
    height, width = shape
    step = max(1, math.ceil(math.sqrt(height * width / NOISE_SAMPLE_PIXELS)))
    while math.ceil(height / step) * math.ceil(width / step) > NOISE_SAMPLE_PIXELS:
        step += 1
    return step


_TINY_VARIANCE: Final = 1e-6
"""A variance below this (grey levels squared) is none: the fit is not made."""


def mask_block_without_shadows(
    foreground: npt.NDArray[np.floating],
    frames: npt.NDArray[np.uint8],
    *,
    threshold: float | npt.NDArray[np.float32],
    ratio: float,
) -> npt.NDArray[np.uint8]:
    """:func:`pipelines.masks.mask_block` of a gray block, its shadows taken out before the clean-up.

    ``foreground`` (n, y, x) float, ``frames`` (n, y, x) uint8 (the background is their
    difference); ``threshold`` a number or a (y, x) map; ``ratio`` the scene's shadow
    ratio.  Returns (n, y, x) uint8 0/255.
    """
    above = mask_block(foreground, threshold=threshold, cleanup=False) > 0
    background = frames.astype(np.float32) - foreground
    candidates = shadow_candidates(frames, background, ratio=ratio)
    ground = rounded_background(background)
    kept = clean_without_shadows(above, candidates, frames=frames, background=ground, ratio=ratio)
    masks: npt.NDArray[np.uint8] = kept.view(np.uint8) * np.uint8(MASK_VALUE)
    return masks


def clean_without_shadows(
    mask: npt.NDArray[np.bool_],
    candidates: npt.NDArray[np.bool_],
    *,
    frames: npt.NDArray[np.number],
    background: npt.NDArray[np.number],
    ratio: float,
) -> npt.NDArray[np.bool_]:
    """(n, y, x) masks without their shadows, cleaned: what ``separate`` and ``apply`` store.

    :func:`drop_shadows`, then the shadows' soft edges and the clean-up of
    :mod:`pipelines.shadow_edges` (the filling of holes puts back only what lies inside
    objects).  Arguments as for :func:`drop_shadows`.  Memory: that of the two steps.
    """
    kept = drop_shadows(mask, candidates, frames=frames, background=background, ratio=ratio)
    kept, edges = without_edges(
        mask,
        kept,
        frames=frames,
        background=background,
        lowest_ratio=ratio - RATIO_BAND,
        min_background=MIN_BACKGROUND,
    )
    return cleaned_without_shadows(mask, kept, edges)


def rounded_background(background: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """The background in whole grey levels, uint8: what :func:`drop_shadows` is given.

    Both ways to the masks (the factors' tiles of ``separate``, the foreground blocks of
    ``apply``) round it so, and keep a quarter of a float32 copy.
    """
    rounded: npt.NDArray[np.uint8] = np.clip(np.rint(background), 0, 255).astype(np.uint8)
    return rounded
