"""A shadow's soft edge, and the clean-up of masks whose shadows left them.

:func:`pipelines.shadows.drop_shadows` takes a shadow's core out of a mask: the pixels
within the band of the scene's ratio.  Its edge is lighter (the penumbra: between the
core and the lit ground), so it stays, as a rim that closes the shadow against its
caster; the clean-up's filling of holes (:func:`pipelines.mask_cleanup.clean_masks`)
then put whole shadows back.  The same filling is right for dark marks inside objects
that left with a shadow's region: their object encloses them.

Two steps, per frame, on what ``drop_shadows`` left:

1. :func:`without_edges`: the masked pixels within :data:`EDGE_SIZE` of the pixels that
   left and partly shadowed (darker than their background, no darker than the band's
   floor) leave too: the edge.
2. :func:`cleaned_without_shadows`: the clean-up, then each place it would have filled
   with the edge kept, and does not fill now, is filled back when less than
   :data:`OPEN_GROUND_SHARE` of the pixels within :data:`SURROUND_WIDTH` around it are
   unmasked ground (before any removal): a place inside an object.  A shadow lies on
   the ground, beside its caster, and stays out.

Pure numpy and OpenCV on (frame, y, x) booleans; no dask, no I/O.
"""

from __future__ import annotations

from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from pipelines.mask_cleanup import clean_masks
from pipelines.pixel_boxes import padded_box
from storage.errors import InvalidParameterError

__all__ = [
    "EDGE_RULE",
    "EDGE_SIZE",
    "OPEN_GROUND_SHARE",
    "SURROUND_WIDTH",
    "cleaned_without_shadows",
    "without_edges",
]

EDGE_SIZE: Final = 3
"""Side of the square by which the pixels that left are grown to reach their shadow's
edge.  Chosen on the shadow scenes of the README, with the filling rule below: 3
gained the most (a scene of dark objects touching their shadows 0.877 -> 0.935); 5 and
7 took more of dark objects' own edges (0.922 and 0.914 without the filling rule,
against 0.931 for 3)."""
SURROUND_WIDTH: Final = 2
"""Pixels around a place the clean-up would fill whose masks decide if it is inside an
object.  Chosen with the share below: 2 and 3 gave F within 0.003 of each other on the
shadow scenes; at 2 the one-by-one clip's person lost 73,000 of her mask pixels, at 3
91,000 (each place with all its surroundings; now that a pixel near two places counts
for one of them, 80,000 at 2)."""
OPEN_GROUND_SHARE: Final = 0.3
"""A place the clean-up would fill stays out of the mask when at least this share of
the pixels around it is unmasked ground: a place open to the ground on one side of
four has about a quarter, a shadow beside its caster a half or more.  Chosen on the
shadow scenes and the real videos here: with no such filling (every place stays
out), the person of the one-by-one clip lost 230,000 more of her mask pixels than
before, in whole patches of her cardigan (a region the plate's ghost of her lets pass
as a shadow, which the filling had put back); at 0.3 she lost 80,000, in slivers at
her outline, and the shadow scenes kept their gains (the crowded one 0.8844 -> 0.8933,
where no filling gave 0.8837).  At a width of 3, 0.4 lost up to 0.003 of F on the
shadow scenes and 0.5 up to 0.018 (she lost 51,000 pixels at 0.4)."""
EDGE_RULE: Final = (
    f"with their soft edge (the masked pixels within their {EDGE_SIZE}x{EDGE_SIZE} dilation"
    " darker than the background, no darker than the band reaches), unless the clean-up's"
    f" filling puts them back where less than {OPEN_GROUND_SHARE:g} of the pixels within"
    f" {SURROUND_WIDTH} around are unmasked"
)
""":mod:`pipelines.shadows`'s rule for the edge and the clean-up, in words."""


def without_edges(
    mask: npt.NDArray[np.bool_],
    kept: npt.NDArray[np.bool_],
    *,
    frames: npt.NDArray[np.number],
    background: npt.NDArray[np.number],
    lowest_ratio: float,
    min_background: float,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """``kept`` without the edges of the shadows that left ``mask``, and those edges.

    Parameters
    ----------
    mask, kept : numpy.ndarray
        (n, y, x) bool: the pixels over the threshold, and those of them that
        :func:`pipelines.shadows.drop_shadows` kept.
    frames, background : numpy.ndarray
        (n, y, x), in grey levels.
    lowest_ratio : float
        The band's floor: ``ratio - RATIO_BAND`` of :mod:`pipelines.shadows`.
    min_background : float
        Grey levels of background below which no pixel is partly shadowed.

    Returns
    -------
    kept, edges : numpy.ndarray
        (n, y, x) bool each: the pixels kept, and the edge pixels that left.

    O(y x) per frame that lost pixels; memory: a uint8 copy of a frame and the pixels near those that left.
    """
    if mask.ndim != 3 or not mask.shape == kept.shape == frames.shape == background.shape:
        raise InvalidParameterError(
            f"without_edges needs (frame, y, x) masks, frames and background of one shape,"
            f" got {mask.shape}, {kept.shape}, {frames.shape} and {background.shape}"
        )
    square = np.ones((EDGE_SIZE, EDGE_SIZE), dtype=np.uint8)
    kept = np.array(kept, dtype=np.bool_)
    edges = np.zeros(mask.shape, dtype=np.bool_)
    for frame in range(mask.shape[0]):
        left = (mask[frame] & ~kept[frame]).view(np.uint8)
        box = padded_box(left, margin=EDGE_SIZE // 2)  # around the pixels that left
        if box is None:
            continue
        near = cv2.dilate(left[box], square).view(np.bool_) & kept[frame][box]
        rows, cols = np.nonzero(near)  # the few pixels to test, not the frame
        ground = np.asarray(background[frame][box][rows, cols], dtype=np.float32)
        light = np.asarray(frames[frame][box][rows, cols], dtype=np.float32)
        partly = (light < ground) & (light >= np.float32(lowest_ratio) * ground) & (ground >= min_background)
        edges[frame][box][rows[partly], cols[partly]] = True
        kept[frame][box][rows[partly], cols[partly]] = False
    return kept, edges


def cleaned_without_shadows(
    mask: npt.NDArray[np.bool_], kept: npt.NDArray[np.bool_], edges: npt.NDArray[np.bool_]
) -> npt.NDArray[np.bool_]:
    """:func:`pipelines.mask_cleanup.clean_masks` of ``kept``, with the places inside objects filled back.

    Parameters
    ----------
    mask : numpy.ndarray
        (n, y, x) bool: the pixels over the threshold, before shadows left.
    kept, edges : numpy.ndarray
        (n, y, x) bool: :func:`without_edges`'s result.

    Returns
    -------
    numpy.ndarray
        (n, y, x) bool.  Each 8-connected place that ``clean_masks(kept | edges)`` fills
        and ``clean_masks(kept)`` does not is filled when less than
        :data:`OPEN_GROUND_SHARE` of the pixels within :data:`SURROUND_WIDTH` around it
        are outside ``mask``.

    Memory: two clean-ups of the frames that lost edges, and a few uint8 copies of a
    place's bounding box.
    """
    if not mask.shape == kept.shape == edges.shape:
        raise InvalidParameterError(
            "cleaned_without_shadows needs masks of one shape,"
            f" got {mask.shape}, {kept.shape} and {edges.shape}"
        )
    cleaned = clean_masks(kept)
    framed = np.nonzero(edges.any(axis=(1, 2)))[0]
    if framed.size == 0:
        return cleaned
    closed = clean_masks(kept[framed] | edges[framed])
    for index, frame in enumerate(framed):
        opened = closed[index] & ~cleaned[frame]
        cleaned[frame] |= _inside_objects(opened, mask[frame])
    return cleaned


def _inside_objects(places: npt.NDArray[np.bool_], mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """(y, x) bool: the 8-connected places mostly surrounded by ``mask`` (see :data:`OPEN_GROUND_SHARE`).

    A place's surroundings are the pixels within :data:`SURROUND_WIDTH` of it; one near
    two places counts for the one with the higher label.  O(pixels of the places' bounding box).
    """
    filled = np.zeros(places.shape, dtype=np.bool_)
    box = padded_box(places, margin=SURROUND_WIDTH)  # around every place
    if box is None:
        return filled
    boxed = np.ascontiguousarray(places[box]).view(np.uint8)
    n_places, labels = cv2.connectedComponents(boxed, connectivity=8)
    square = np.ones((2 * SURROUND_WIDTH + 1, 2 * SURROUND_WIDTH + 1), dtype=np.uint8)
    # float32 holds every label exactly (up to 2^24); the dilation takes the highest near
    nearest = cv2.dilate(labels.astype(np.float32), square).astype(np.intp)
    around = (nearest > 0) & (labels == 0)
    surrounding = np.bincount(nearest[around], minlength=n_places)
    open_ground = np.bincount(nearest[around & ~mask[box]], minlength=n_places)
    share = open_ground / np.maximum(surrounding, 1)
    inside = (surrounding > 0) & (share < OPEN_GROUND_SHARE)
    inside[0] = False
    filled[box] = inside[labels]
    return filled
