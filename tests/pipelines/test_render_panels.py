"""The rendered panels of foreground.mp4 and compare.mp4: exact integer arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.render import (
    LABEL_MIN_PANEL_WIDTH,
    background_from,
    compare_panels,
    label_panels,
    shrink,
    visible_foreground,
)

EVERY_INT16 = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16)


def test_visible_foreground_is_128_plus_half_clipped_for_every_int16() -> None:
    expected = np.clip(128 + EVERY_INT16.astype(np.int32) // 2, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(visible_foreground(EVERY_INT16), expected)


def test_background_is_original_minus_foreground_clipped_for_every_int16() -> None:
    original = np.random.default_rng(0).integers(0, 256, EVERY_INT16.shape).astype(np.uint8)
    expected = np.clip(original.astype(np.int32) - EVERY_INT16, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(background_from(original, EVERY_INT16), expected)


@pytest.mark.parametrize(
    ("height", "width", "factor"), [(720, 1280, 2), (719, 1279, 3), (9, 7, 1), (40, 40, 17)]
)
def test_shrink_takes_rounded_block_means(height: int, width: int, factor: int) -> None:
    frames = np.random.default_rng(1).integers(0, 256, (3, height, width)).astype(np.uint8)
    rows, cols = height // factor, width // factor
    blocks = frames[:, : rows * factor, : cols * factor].reshape(3, rows, factor, cols, factor)
    sums = blocks.sum(axis=(2, 4), dtype=np.int64)
    expected = ((sums + factor * factor // 2) // (factor * factor)).astype(np.uint8)
    shrunk = shrink(frames, factor)
    assert shrunk.shape == expected.shape and shrunk.dtype == np.uint8
    off = np.abs(shrunk.astype(np.int16) - expected)
    assert off.max() <= 1  # OpenCV's fixed point: at most one grey level from the rounded mean
    if factor == 2:  # the factor of 720p's compare.mp4: exactly the rounded mean
        np.testing.assert_array_equal(shrunk, expected)


def test_shrink_keeps_colour_channels_and_empty_blocks() -> None:
    frames = np.random.default_rng(2).integers(0, 256, (2, 6, 8, 3)).astype(np.uint8)
    shrunk = shrink(frames, 2)
    assert shrunk.shape == (2, 3, 4, 3)
    np.testing.assert_array_equal(shrunk[..., 1], shrink(np.ascontiguousarray(frames[..., 1]), 2))
    assert shrink(frames[:0], 2).shape == (0, 3, 4, 3)
    assert shrink(frames[:, :1], 2).shape == (2, 0, 4, 3)


def test_panels_are_labelled_in_their_corner_and_nowhere_else() -> None:
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (3, 120, 200), dtype=np.uint8)
    foreground = rng.integers(-255, 256, (3, 120, 200)).astype(np.int16)
    mask = np.where(rng.random((3, 120, 200)) > 0.5, 255, 0).astype(np.uint8)
    plain = compare_panels(original, foreground, mask, labels=False)
    labelled = compare_panels(original, foreground, mask)
    given = compare_panels(original, foreground, mask, visible=visible_foreground(foreground))
    np.testing.assert_array_equal(given, labelled)  # the caller's visible foreground is that panel
    changed = np.any(labelled != plain, axis=0)  # (y, 4 * x)
    rows, columns = np.nonzero(changed)
    assert rows.max() < 20  # one line of text at the top
    for panel in range(4):  # every panel has its label at its left
        inside = (columns >= panel * 200) & (columns < panel * 200 + 190)
        assert inside.any(), panel
        assert columns[inside].min() < panel * 200 + 6
    assert np.count_nonzero(labelled == 255) > np.count_nonzero(plain == 255)  # white text


def test_narrow_panels_get_no_label() -> None:
    frames = np.full((2, 48, 4 * (LABEL_MIN_PANEL_WIDTH - 1)), 90, dtype=np.uint8)
    assert np.array_equal(label_panels(frames.copy(), panel_width=LABEL_MIN_PANEL_WIDTH - 1), frames)


@pytest.mark.parametrize(
    ("height", "width", "factor"),
    [(720, 1280, 3), (721, 1279, 3), (360, 1281, 3), (360, 960, 2), (240, 481, 2), (240, 480, 1)],
)
def test_compare_panels_are_the_four_panels_shrunk_side_by_side(height: int, width: int, factor: int) -> None:
    rng = np.random.default_rng(4)
    original = rng.integers(0, 256, (2, height, width), dtype=np.uint8)
    foreground = rng.integers(-300, 300, (2, height, width)).astype(np.int16)
    mask = np.where(rng.random((2, height, width)) > 0.5, 255, 0).astype(np.uint8)
    panels = (original, background_from(original, foreground), visible_foreground(foreground), mask)
    # four panels into 1920 columns at most, by the least integer factor
    expected = np.concatenate(
        [np.stack([shrink(panel[t : t + 1], factor)[0] for t in range(2)]) for panel in panels], axis=2
    )  # frame by frame, into fresh arrays
    got = compare_panels(original, foreground, mask, labels=False)
    np.testing.assert_array_equal(got, expected)


def test_shrink_writes_into_a_view_of_a_wider_frame() -> None:
    frames = np.random.default_rng(5).integers(0, 256, (3, 8, 10)).astype(np.uint8)
    wide = np.zeros((3, 4, 15), dtype=np.uint8)
    returned = shrink(frames, 2, out=wide[:, :, 5:10])
    np.testing.assert_array_equal(wide[:, :, 5:10], shrink(frames, 2))
    assert np.shares_memory(returned, wide) and not wide[:, :, :5].any() and not wide[:, :, 10:].any()
