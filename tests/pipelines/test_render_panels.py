"""The rendered panels of foreground.mp4 and compare.mp4: exact integer arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.render import background_from, shrink, visible_foreground

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
    np.testing.assert_array_equal(shrink(frames, factor), expected)
