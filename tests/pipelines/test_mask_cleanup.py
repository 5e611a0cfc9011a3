"""The masks' clean-up: holes filled, also those a frame's edge opens."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.mask_cleanup import CLEANUP_RULE, clean_masks, fill_holes, majority_3x3
from pipelines.registration import BAND_RULE
from pipelines.steps.separate import CLEANUP
from storage.errors import InvalidParameterError
from tests.helpers import filled_to_one_edge


def car_cut_by_the_bottom_edge() -> np.ndarray:
    """A 40 x 60 frame: a car whose windscreen (background-like) opens onto the bottom edge."""
    frame = np.zeros((40, 60), dtype=bool)
    frame[25:40, 20:40] = True  # the car, cut by the bottom edge
    frame[30:40, 26:34] = False  # its windscreen, open to the bottom edge only
    return frame[None]


def test_a_hole_open_to_one_edge_is_filled_only_with_one_edge() -> None:
    car = car_cut_by_the_bottom_edge()
    assert not fill_holes(car)[0, 30:40, 26:34].any()  # the classic rule: not a hole
    filled = fill_holes(car, one_edge=True)
    assert filled[0, 30:40, 26:34].all()
    assert not filled[0, :25].any() and not filled[0, :, :20].any()  # the road stays


def test_background_reaching_two_edges_stays_background() -> None:
    frame = np.zeros((1, 30, 30), dtype=bool)
    frame[0, 10, :] = True  # a wall across the frame: both halves reach three edges
    frame[0, 20:30, 5] = True  # a post on the bottom edge
    frame[0, 20:30, 9] = True  # and another,
    frame[0, 20, 5:10] = True  # roofed: between them, one edge only
    filled = fill_holes(frame, one_edge=True)
    assert not filled[0, :10].any()
    assert not filled[0, 11:20, 10:].any()
    assert filled[0, 21:30, 6:9].all()
    assert not filled[0, 21:30, 10:].any()
    corner = np.zeros((1, 20, 20), dtype=bool)
    corner[0, :8, 8] = True
    corner[0, 8, :9] = True  # the top-left corner walled off: it reaches two edges
    assert not fill_holes(corner, one_edge=True)[0, :8, :8].any()


@pytest.mark.parametrize("seed", range(6))
def test_one_edge_filling_equals_the_region_by_region_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for height, width in ((1, 1), (1, 7), (6, 1), (2, 2), (9, 13), (31, 17)):
        masks = rng.random((4, height, width)) < rng.uniform(0.2, 0.8)
        np.testing.assert_array_equal(fill_holes(masks, one_edge=True), filled_to_one_edge(masks))


def test_more_regions_on_the_edge_than_marks_are_labelled_instead() -> None:
    """Stripes leave 300 regions on the top and bottom edges: more than a byte can mark."""
    frame = np.zeros((1, 40, 600), dtype=bool)
    frame[0, :, 1::2] = True
    frame[0, 20, :] = True
    np.testing.assert_array_equal(fill_holes(frame, one_edge=True), filled_to_one_edge(frame))
    filled = fill_holes(frame, one_edge=True)
    assert filled[0, :, 1:].all()  # every strip reaches one edge ...
    assert not filled[0, :20, 0].any() and not filled[0, 21:, 0].any()  # but the first: left edge too


def test_whole_frames_of_one_kind() -> None:
    empty = np.zeros((2, 5, 6), dtype=bool)
    full = np.ones((2, 5, 6), dtype=bool)
    assert not fill_holes(empty, one_edge=True).any()
    assert fill_holes(full, one_edge=True).all()
    ring = np.ones((1, 5, 6), dtype=bool)
    ring[0, 2, 2:4] = False  # no background on any edge: the inside is a hole
    assert fill_holes(ring, one_edge=True).all()
    assert fill_holes(np.zeros((0, 4, 4), dtype=bool), one_edge=True).shape == (0, 4, 4)
    with pytest.raises(InvalidParameterError, match="frame, y, x"):
        fill_holes(np.zeros((4, 4), dtype=bool), one_edge=True)


def test_clean_masks_is_the_majority_then_one_edge_filling_and_recorded_so() -> None:
    rng = np.random.default_rng(11)
    masks = rng.random((3, 24, 32)) < 0.5
    np.testing.assert_array_equal(clean_masks(masks), fill_holes(majority_3x3(masks), one_edge=True))
    assert f"{CLEANUP_RULE}; {BAND_RULE}" == CLEANUP  # and the band of registered frames
    assert "one edge" in CLEANUP_RULE
