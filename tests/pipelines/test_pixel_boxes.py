"""The bounding box of a mask's pixels, grown by a margin and clipped to the frame."""

from __future__ import annotations

import numpy as np

from pipelines.pixel_boxes import padded_box


def test_the_box_holds_the_pixels_and_their_margin_inside_the_frame() -> None:
    mask = np.zeros((10, 12), dtype=bool)
    mask[3, 4] = mask[5, 7] = True
    assert padded_box(mask, margin=0) == (slice(3, 6), slice(4, 8))
    assert padded_box(mask, margin=2) == (slice(1, 8), slice(2, 10))
    assert padded_box(mask, margin=5) == (slice(0, 10), slice(0, 12))  # clipped at the edges
    assert padded_box(mask.astype(np.uint8), margin=1) == (slice(2, 7), slice(3, 9))


def test_an_empty_mask_has_no_box() -> None:
    assert padded_box(np.zeros((4, 4), dtype=bool), margin=3) is None
