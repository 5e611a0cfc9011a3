"""Cast shadows: the ground darkened by one ratio, taken out of the masks on request.

In gray, a cast shadow is the background times a factor below one: where the sun is
blocked, ``frame = ratio * background`` give or take the noise, with one ratio for the
whole scene (one sun, one kind of ground).  CDnet and most ground truth mark shadows as
background; ``|frame - background| > threshold`` marks them as foreground as soon as
the ratio is below ``1 - threshold / background``.

The rule (``separate --shadows``), in three parts:

1. :func:`ratio_counts` then :func:`shadow_ratio_of`: the scene's shadow ratio is the
   commonest ``frame / background`` of the masked pixels darker than their background,
   in :data:`RATIO_BINS` bins of 0.01 over [0.30, 1.00), on a sample of frames.  Only a
   mode at least :data:`EDGE_MARGIN` inside that range counts: a mode at its lower end
   is dark objects (their ratios pile up in the first bin), one at its upper end is
   noise barely above the threshold.
2. :func:`shadow_candidates`: pixels within :data:`RATIO_BAND` of that ratio, on a
   background of at least :data:`MIN_BACKGROUND` grey levels (on darker ground a ratio
   is mostly noise).
3. :func:`drop_shadows`: candidates leave a frame's mask only inside a mask component
   (8-connected) of which at least :data:`OTHER_SHARE` is not a candidate: a shadow is
   cast by something, which the mask holds beside it; a flat dark object whose whole
   mask matches the ratio stays.

Measured with ``vidsvd separate --shadows`` on synthetic scenes whose objects cast
shadows of 0.3-0.6 (README, "Background models"); it removes parts of flat objects whose gray
happens to be the ground's times the ratio, so it is not the default.
"""

from __future__ import annotations

from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from pipelines.mask_cleanup import clean_masks
from pipelines.masks import MASK_VALUE, mask_block
from storage.errors import InvalidParameterError

__all__ = [
    "EDGE_MARGIN",
    "MIN_BACKGROUND",
    "MIN_SAMPLE_PIXELS",
    "OTHER_SHARE",
    "RATIO_BAND",
    "RATIO_BINS",
    "RATIO_RANGE",
    "SHADOW_RULE",
    "drop_shadows",
    "mask_block_without_shadows",
    "ratio_counts",
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
OTHER_SHARE: Final = 0.2
"""Share of a mask component that must not be a candidate for its candidates to go."""
MIN_SAMPLE_PIXELS: Final = 500
"""Darker masked pixels the sample must hold for a shadow ratio to be measured."""

SHADOW_RULE: Final = (
    f"cast shadows removed: pixels within {RATIO_BAND:g} of the scene's commonest"
    " ratio to the background, inside masks holding other pixels too"
)
"""The rule in words, as separations that applied it record it."""


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


def shadow_ratio_of(counts: npt.ArrayLike) -> float | None:
    """The scene's shadow ratio from :func:`ratio_counts`, or None when it shows none.

    The centre of the fullest bin, when it lies at least :data:`EDGE_MARGIN` inside
    :data:`RATIO_RANGE` and the counts hold at least :data:`MIN_SAMPLE_PIXELS` pixels.
    """
    histogram = np.asarray(counts, dtype=np.int64).reshape(-1)
    if histogram.shape != (RATIO_BINS,):
        raise InvalidParameterError(f"need {RATIO_BINS} ratio counts, got {histogram.shape[0]}")
    if int(histogram.sum()) < MIN_SAMPLE_PIXELS:
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


def drop_shadows(mask: npt.NDArray[np.bool_], candidates: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """(n, y, x) masks without their shadow candidates, where something else casts them.

    Per frame, each 8-connected component of the mask loses its candidate pixels when
    at least :data:`OTHER_SHARE` of it is not a candidate; a component that is (nearly)
    all candidate stays whole.  Apply it before the clean-up, which then fills what
    the removal left enclosed.  O(y x) per frame; memory: one int32 label image.
    """
    if mask.ndim != 3 or mask.shape != candidates.shape:
        raise InvalidParameterError(
            f"drop_shadows needs (frame, y, x) masks and candidates of one shape, got {mask.shape}"
            f" and {candidates.shape}"
        )
    kept = np.array(mask, dtype=np.bool_)
    for frame in range(kept.shape[0]):
        shadowy = kept[frame] & candidates[frame]
        if not shadowy.any():
            continue
        n_labels, labels = cv2.connectedComponents(kept[frame].view(np.uint8), connectivity=8)
        sizes = np.bincount(labels.ravel(), minlength=n_labels)
        shadow_sizes = np.bincount(labels[shadowy], minlength=n_labels)
        removable = sizes - shadow_sizes >= OTHER_SHARE * sizes
        removable[0] = False  # the background of the mask
        kept[frame] &= ~(shadowy & removable[labels])
    return kept


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
    kept = drop_shadows(above, shadow_candidates(frames, background, ratio=ratio))
    masks: npt.NDArray[np.uint8] = clean_masks(kept).view(np.uint8) * np.uint8(MASK_VALUE)
    return masks
