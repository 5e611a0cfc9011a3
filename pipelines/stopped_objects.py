"""Where an object stood longer than the ground was seen: the plate takes the ground back.

A per-pixel median takes for background whatever a pixel shows in most frames: a
walker who stands for more than half of the clip, or several who stop in turn at one
place, stay in the plate, and the ground, seen in the other frames, becomes a ghost in
every mask.  Per pixel nothing tells the two apart; around the place, the ground does.

The rule, on the robust model's plate ``P`` (gain-divided frames, grey levels) and its
masks' threshold ``T`` (per pixel ``T_p``, the ``auto`` rule's map):

1. :func:`alternatives`: coarse counts of the gain-divided frames (16 bins of 16 grey
   levels; :mod:`pipelines.median_counts`), without the bins that reach within ``T_p``
   of the plate.  The densest three neighbouring bins are the pixel's alternative
   value, when they hold at least :data:`CLUSTER_SHARE` of the frames counted and at
   least :data:`CLUSTER_PURITY` of those away from the plate: something that stood
   there, not passers-by of every colour.
2. :func:`swapped_pixels`: the plate around those pixels, inpainted over them and over
   the pixels away from their plate in at least :data:`BUSY_SHARE` of the frames, so
   that only pixels that show their plate most of the time speak for the ground
   (OpenCV's Telea inpainting, radius :data:`INPAINT_RADIUS` at full size, done at
   half size).  A pixel takes its alternative when that is closer to the inpainted
   ground by :data:`DECISION_MARGIN` times ``T`` or more; or, where the place is wide,
   when it is closer to the ground grown inward (:func:`ground_grown_inward`: ring by
   ring from the place's border, each pixel's neighbours' mean picks the nearer of its
   plate and its alternative, which then speaks for the next ring) by
   :data:`GROWTH_MARGIN` times ``T`` and holds at least :data:`GROWTH_SHARE` of the
   frames the plate's own band holds; of those decisions only the wide parts count (an
   opening by a disc of :func:`growth_opening` pixels).  A 5 x 5 majority vote then
   removes isolated decisions, and the pixels within two of a decided one follow when
   their alternative is closer at all and within ``T`` of their decided neighbours'
   (the rim of a place, whose pixels saw the object in part), before a second vote.
3. :func:`values_in_window`: the new plate value is the exact median of the pixel's
   gain-divided values inside its alternative's bins, away from the old plate.

Measured on synthetic scenes whose walkers stop, and on the real videos here (README,
"Background models").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from pipelines.count_kernels import BINS
from pipelines.pixel_boxes import padded_box
from storage.errors import InvalidParameterError

__all__ = [
    "BUSY_SHARE",
    "CLUSTER_PURITY",
    "CLUSTER_SHARE",
    "COUNTED_EVERY",
    "DECISION_MARGIN",
    "GROWTH_MARGIN",
    "GROWTH_SHARE",
    "INPAINT_RADIUS",
    "Alternatives",
    "alternatives",
    "ground_grown_inward",
    "growth_opening",
    "swapped_pixels",
    "values_in_window",
]

COUNTED_EVERY: Final = 4
"""Every this-many-th frame is counted: a stop that matters lasts far longer, and the
counts cost a quarter (the decisions were the same within 0.01 of F as counting all)."""
CLUSTER_SHARE: Final = 0.2
"""Least share of the counted frames in a pixel's alternative.  Lower shares reach
places where the ground was seen less often, and take the ground of real plates away
where it is right: at 0.15 and 0.10, one synthetic scene of 25 gained (+0.04, +0.06:
walkers stopping in turn at one place) and none lost more than 0.001, but the car
park's white line became road, and at 0.10 dark blobs came into the escalator's floor
and the shop's corridor; at 0.08 a pale scene lost 0.02 and at 0.05 0.23 (the
inpainting across the edge of a flat patch of the background)."""
CLUSTER_PURITY: Final = 0.5
"""Least share of a pixel's frames away from its plate that its alternative holds.
At 0.35 no synthetic scene moved by more than 0.001, and on the visitors' clip the
torso ghost, whose wall is seen in a third of the frames, only broke into patches."""
BUSY_SHARE: Final = 0.15
"""Pixels away from their plate in this share of the frames are inpainted over too."""
DECISION_MARGIN: Final = 3.0
"""Thresholds by which the alternative must be closer to the inpainted ground than the
plate: at 1 and 2, low-contrast objects that stopped under drifting light took the
ground's place over wide areas (F -0.05 and -0.015 on one scene of 26); at 3 no scene
lost more than 0.003, at 4 most gains were gone."""
GROWTH_MARGIN: Final = 2.0
"""Thresholds by which the alternative must be closer than the plate to the ground grown
inward.  The inpainted ground smears what lies around a wide place across it (a dark
table leg or floor into a wall), so that its margin of 3 thresholds let a ghost stay
whenever object and ground differ by less than about 4; grown ring by ring, the ground
keeps each pixel's own values.  Swept on 29 synthetic scenes (13 with stops) with the
share and opening below: at 3 the stops gained less (walkers standing 55 % under
drifting light +0.105 against +0.113), at 1 one scene gained 0.018 more but the
motorway's plate took a dark spot and the car park's line more road (README,
"Background models")."""
GROWTH_SHARE: Final = 0.5
"""Least ratio of the alternative's frames to those of the plate's own band (the bins
within the threshold of it) for a decision by growth: where the plate is seen more
than twice as often as its alternative, it is the ground, whatever lies around it.
Without it patches of the escalator's floor, seen in 70-80 % of the frames, took the
bright values of the other 20-25 % (2.4 % of the plate; at 0.3 one patch of 89
pixels stayed); walkers who stood for 70 % still leave by the inpainted ground's rule."""
_GROWTH_OPENING_FRACTION: Final = 1 / 60
"""The opening's disc, as a fraction of the frame's shorter side (at least 5 pixels):
7 pixels at 768x432.  Thin structures of the plate (a parking line 4-6 pixels wide),
whose neighbours are all ground of another grey, would take the ground's value by
growth; a stop is wider.  Without it the car park's white line broke into road."""
INPAINT_RADIUS: Final = 7
"""Radius of OpenCV's inpainting, pixels."""
_MAJORITY_SIZE: Final = 5
_WINDOW_BINS: Final = 3


@dataclass(frozen=True, kw_only=True)
class Alternatives:
    """Each pixel's densest value away from its plate, from coarse counts.

    Attributes
    ----------
    first_bin : numpy.ndarray
        (P,) int: the first of the three coarse bins of the alternative (-1 to 13;
        the bins are ``first_bin``, ``first_bin + 1`` and ``first_bin + 2``, those
        outside 0-15 empty).
    value : numpy.ndarray
        (P,) float32: the counts' mean of the bins' centres, grey levels.
    cluster : numpy.ndarray
        (P,) int64: frames counted in the three bins.
    away : numpy.ndarray
        (P,) int64: frames counted in every bin away from the plate.
    """

    first_bin: npt.NDArray[np.int64]
    value: npt.NDArray[np.float32]
    cluster: npt.NDArray[np.int64]
    away: npt.NDArray[np.int64]


def alternatives(
    counts: npt.NDArray[np.integer], plate: npt.ArrayLike, threshold: npt.ArrayLike
) -> Alternatives:
    """The alternatives of :func:`pipelines.median_counts.coarse_counts`' (16, P) counts.

    ``plate`` (P,) grey levels and ``threshold`` (P,) or a number: the bins that
    reach within the threshold of the plate do not count.  O(16 P) memory.
    """
    if counts.ndim != 2 or counts.shape[0] != BINS:
        raise InvalidParameterError(f"coarse counts are ({BINS}, P), got {counts.shape}")
    n_pixels = counts.shape[1]
    centre = np.asarray(plate, dtype=np.float32).reshape(-1)
    reach = np.broadcast_to(np.asarray(threshold, dtype=np.float32).reshape(-1), (n_pixels,))
    if centre.shape != (n_pixels,):
        raise InvalidParameterError(f"the plate must have {n_pixels} pixels, got {centre.shape[0]}")
    low = np.floor(np.clip(centre - reach, 0, 255) / BINS).astype(np.int64)
    high = np.floor(np.clip(centre + reach, 0, 255) / BINS).astype(np.int64)
    # a row of counts at a time, in reused buffers: no (16, P) copy to fault in
    rows = [np.zeros(n_pixels, dtype=np.uint32) for _ in range(_WINDOW_BINS)]
    window = np.empty(n_pixels, dtype=np.uint32)
    away = np.zeros(n_pixels, dtype=np.int64)
    best = np.zeros(n_pixels, dtype=np.int64)  # window k holds bins k - 2 .. k
    cluster = np.zeros(n_pixels, dtype=np.uint32)
    for last in range(BINS + 2):
        newest = rows[last % _WINDOW_BINS]
        if last < BINS:
            np.multiply(counts[last], (last < low) | (last > high), out=newest, casting="unsafe")
            away += newest
        else:
            newest.fill(0)
        np.add(rows[0], rows[1], out=window)
        window += rows[2]
        fuller = window > cluster
        best[fuller] = last
        cluster[fuller] = window[fuller]
    first = best - 2
    weight = np.zeros(n_pixels, dtype=np.float64)
    total = np.zeros(n_pixels, dtype=np.float64)
    pixels = np.arange(n_pixels)
    for offset in range(_WINDOW_BINS):
        index = first + offset
        row = np.clip(index, 0, BINS - 1)
        kept = (index >= 0) & (index < BINS) & ((row < low) | (row > high))
        taken = np.where(kept, counts[row, pixels], 0)
        weight += taken
        total += taken * (index * BINS + BINS / 2)
    value = (total / np.maximum(weight, 1)).astype(np.float32)
    return Alternatives(first_bin=first, value=value, cluster=cluster.astype(np.int64), away=away)


def swapped_pixels(
    plate: npt.NDArray[np.floating],
    found: Alternatives,
    *,
    n_counted: int,
    threshold: float,
) -> npt.NDArray[np.bool_]:
    """(y, x) bool: the pixels whose plate is an object and whose alternative is the ground.

    ``plate`` (y, x) grey levels; ``found`` its :func:`alternatives` (P = y x);
    ``n_counted`` the frames counted; ``threshold`` the global threshold, grey levels.
    O(y x) memory; the inpainting's time grows with the pixels it fills.
    """
    if plate.ndim != 2 or found.value.shape != (plate.size,):
        raise InvalidParameterError(f"a (y, x) plate of {found.value.size} pixels, got {plate.shape}")
    shape = plate.shape
    cluster, away = found.cluster.reshape(shape), found.away.reshape(shape)
    candidate = (cluster >= CLUSTER_SHARE * n_counted) & (cluster >= CLUSTER_PURITY * np.maximum(away, 1))
    if not candidate.any():
        return candidate
    unreliable = (candidate | (away >= BUSY_SHARE * n_counted)).astype(np.uint8)
    holes = cv2.dilate(unreliable, np.ones((_MAJORITY_SIZE, _MAJORITY_SIZE), np.uint8))
    # only the holes that hold a candidate are filled: the inpainting costs their area
    n_holes, labels = cv2.connectedComponents(holes, connectivity=8)
    wanted = np.zeros(n_holes, dtype=np.uint8)
    wanted[labels[candidate]] = 1
    wanted[0] = 0
    holes = wanted[labels]
    around = _inpainted_at_half_size(np.clip(np.rint(plate), 0, 255).astype(np.uint8), holes)
    value = found.value.reshape(shape)
    distance_alternative, distance_plate = np.abs(value - around), np.abs(plate - around)
    by_inpainting = candidate & (distance_alternative + DECISION_MARGIN * threshold < distance_plate)
    by_growth = _decided_by_growth(
        plate, found, candidate=candidate, labels=np.asarray(labels), n_counted=n_counted, threshold=threshold
    )
    decided = (by_inpainting | by_growth).astype(np.uint8)
    seeds = cv2.medianBlur(decided, _MAJORITY_SIZE)
    # the rim of each decided place (its pixels saw the object in part) follows without the
    # margin, when its alternative is the ground its decided neighbours took
    box = (_MAJORITY_SIZE, _MAJORITY_SIZE)
    near = cv2.boxFilter(seeds.astype(np.float32), -1, box, normalize=False)
    taken = cv2.boxFilter(np.where(seeds > 0, value, 0).astype(np.float32), -1, box, normalize=False)
    like_neighbours = np.abs(value - taken / np.maximum(near, 1)) <= threshold
    rim = (near > 0) & candidate & (distance_alternative < distance_plate) & like_neighbours
    grown = (seeds.view(np.bool_) | rim).astype(np.uint8)
    swapped: npt.NDArray[np.bool_] = cv2.medianBlur(grown, _MAJORITY_SIZE).view(np.bool_)
    return swapped


def _decided_by_growth(
    plate: npt.NDArray[np.floating],
    found: Alternatives,
    *,
    candidate: npt.NDArray[np.bool_],
    labels: npt.NDArray[np.integer],
    n_counted: int,
    threshold: float,
) -> npt.NDArray[np.bool_]:
    """(y, x) bool: the wide places whose alternative is the ground grown inward (module notes).

    ``labels``: the holes' 8-connected labels, as :func:`swapped_pixels` found them
    (every candidate lies in one).  The ground is grown only in the holes that hold a
    wide place where a decision is possible at all (alternative and plate more than the
    margin apart, the share met): most plates have none, and a busy scene's holes can
    cover most of the frame.
    """
    shape = plate.shape
    value = found.value.reshape(shape)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (growth_opening(shape),) * 2)
    shared = found.cluster.reshape(shape) >= GROWTH_SHARE * (n_counted - found.away.reshape(shape))
    possible = (candidate & shared & (np.abs(value - plate) > GROWTH_MARGIN * threshold)).astype(np.uint8)
    wide_possible = cv2.morphologyEx(possible, cv2.MORPH_OPEN, disc)
    if not wide_possible.any():
        return np.zeros(shape, dtype=np.bool_)
    grown_in = np.zeros(int(labels.max()) + 1, dtype=np.bool_)
    grown_in[labels[wide_possible.view(np.bool_)]] = True
    grown_in[0] = False
    grown = ground_grown_inward(plate, value, candidate=candidate, holes=grown_in[labels])
    by_growth = possible.view(np.bool_) & (
        np.abs(value - grown) + GROWTH_MARGIN * threshold < np.abs(plate - grown)
    )
    wide: npt.NDArray[np.bool_] = cv2.morphologyEx(by_growth.astype(np.uint8), cv2.MORPH_OPEN, disc).view(
        np.bool_
    )
    return wide


def growth_opening(shape: tuple[int, ...]) -> int:
    """The (odd) diameter, pixels, of the disc that opens the decisions by growth of a (y, x) plate."""
    return max(_MAJORITY_SIZE, int(min(shape[:2]) * _GROWTH_OPENING_FRACTION)) | 1


def ground_grown_inward(
    plate: npt.NDArray[np.floating],
    value: npt.NDArray[np.floating],
    *,
    candidate: npt.NDArray[np.bool_],
    holes: npt.NDArray[np.bool_],
) -> npt.NDArray[np.float32]:
    """(y, x) float32: the ground each hole pixel's grown neighbours show, the plate elsewhere.

    ``plate`` and ``value`` (the alternatives) are (y, x) grey levels, ``candidate``
    and ``holes`` (y, x) bool.  The holes are filled ring by ring, by their distance
    to the nearest pixel outside them: a ring's pixel gets the mean of the known
    pixels in its 5 x 5 neighbourhood (outside the holes, or in an earlier ring),
    then knows, as its own ground, the nearer to that mean of its plate and (for
    candidates) its alternative.  Unlike an inpainting, the ground carried inward is
    made of each pixel's own values, so a wide place keeps the ground's grey however
    far its middle lies from the border.  Returned: the means (the ground a pixel's
    neighbours show it); the plate everywhere when the holes cover the whole frame.
    Work: two box filters of the holes' bounding box per ring, rings up to half the
    widest hole; memory: a few float32 copies of that box.
    """
    estimate = np.asarray(plate, dtype=np.float32).copy()
    box = padded_box(holes, margin=_MAJORITY_SIZE // 2)
    if box is None:
        return estimate
    own, other = estimate[box].copy(), np.asarray(value, dtype=np.float32)[box]
    may_take = candidate[box]
    inside = holes[box].astype(np.uint8)
    if inside.all():  # a frame that is all hole has no border to grow from
        return estimate
    ground = own.copy()
    known = (inside == 0).astype(np.float32)
    rings = np.ceil(cv2.distanceTransform(inside, cv2.DIST_L2, 3)).astype(np.int32)
    window = (_MAJORITY_SIZE, _MAJORITY_SIZE)
    means = estimate[box]  # a view: written in place
    for ring in range(1, int(rings.max()) + 1):
        total = cv2.boxFilter(ground * known, -1, window, normalize=False)
        count = cv2.boxFilter(known, -1, window, normalize=False)
        at = (rings == ring) & (count > 0)
        mean = total[at] / count[at]
        means[at] = mean
        takes = may_take[at] & (np.abs(other[at] - mean) < np.abs(own[at] - mean))
        ground[at] = np.where(takes, other[at], own[at])
        known[at] = 1.0
    return estimate


def _inpainted_at_half_size(
    ground: npt.NDArray[np.uint8], holes: npt.NDArray[np.uint8]
) -> npt.NDArray[np.float32]:
    """The plate inpainted over ``holes``, at half its size and back: what it shows around them.

    Telea's inpainting costs its holes' area times its radius squared: at half size a
    sixteenth, and the same decisions on the scenes measured (within 0.001 of F).
    Frames under 32 pixels a side are inpainted at their own size.
    """
    height, width = ground.shape
    if min(height, width) < 32:
        filled = cv2.inpaint(ground, holes, INPAINT_RADIUS, cv2.INPAINT_TELEA)
        return filled.astype(np.float32)
    half = (width // 2, height // 2)
    small = cv2.resize(ground, half, interpolation=cv2.INTER_AREA)
    small_holes = np.ascontiguousarray(
        cv2.dilate(holes, np.ones((2, 2), np.uint8))[::2, ::2][: half[1], : half[0]]
    )
    filled = cv2.inpaint(small, small_holes, max(1, INPAINT_RADIUS // 2), cv2.INPAINT_TELEA)
    around: npt.NDArray[np.float32] = cv2.resize(
        filled, (width, height), interpolation=cv2.INTER_LINEAR
    ).astype(np.float32)
    return around


def values_in_window(
    counts: npt.NDArray[np.integer],
    *,
    first_bin: npt.NDArray[np.integer],
    plate: npt.ArrayLike,
    threshold: npt.ArrayLike,
) -> npt.NDArray[np.float32]:
    """(m,) exact medians of each pixel's values in its alternative's bins, away from the plate.

    ``counts`` (256, m): each value's frames (:func:`pipelines.median_counts.value_counts`
    of the gain-divided frames); ``first_bin`` (m,) from :class:`Alternatives`;
    ``plate`` and ``threshold`` (m,) or numbers.  NaN where no frame is left.
    """
    if counts.ndim != 2 or counts.shape[0] != 256:
        raise InvalidParameterError(f"value counts are (256, m), got {counts.shape}")
    n_pixels = counts.shape[1]
    values = np.arange(256, dtype=np.float32)[:, np.newaxis]
    start = (np.asarray(first_bin, dtype=np.int64).reshape(-1) * BINS)[np.newaxis]
    centre = np.broadcast_to(np.asarray(plate, dtype=np.float32).reshape(-1), (n_pixels,))[np.newaxis]
    reach = np.broadcast_to(np.asarray(threshold, dtype=np.float32).reshape(-1), (n_pixels,))[np.newaxis]
    inside = (values >= start) & (values < start + _WINDOW_BINS * BINS) & (np.abs(values - centre) > reach)
    kept = np.where(inside, counts, 0).astype(np.int64)
    total = kept.sum(axis=0)
    cumulative = np.cumsum(kept, axis=0)
    # the lower median: the first value whose cumulative count reaches half of the total
    median = np.argmax(cumulative * 2 >= np.maximum(total, 1), axis=0).astype(np.float32)
    result: npt.NDArray[np.float32] = np.where(total > 0, median, np.nan).astype(np.float32)
    return result
