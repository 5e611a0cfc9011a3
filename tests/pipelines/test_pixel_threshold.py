"""The per-pixel threshold: each pixel's noise from its frame-to-frame change, and the masks it gives."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from pipelines.masks import (
    PIXEL_NOISE_FACTOR,
    auto_threshold,
    mask_block,
    masks,
    noise_pair_frames,
    noise_scale_of,
    pixel_noise_scale,
    sample_frames,
    threshold_map,
)
from pipelines.scene_textures import sway_region
from pipelines.synthetic import SceneSpec, render_scene
from storage.errors import InvalidParameterError

RNG_SEED = 11


def test_noise_pair_frames_leave_room_for_the_second_frame() -> None:
    firsts = noise_pair_frames(100)
    assert firsts.size == 64 and firsts[0] == 0 and firsts[-1] == 98
    np.testing.assert_array_equal(noise_pair_frames(5), [0, 1, 2, 3])
    assert noise_pair_frames(1).size == 0  # one frame: no pair, no per-pixel noise


def test_pixel_noise_scale_is_the_sigma_of_gaussian_noise() -> None:
    rng = np.random.default_rng(RNG_SEED)
    still = rng.uniform(50, 200, size=(1, 30, 40))
    frames = still + rng.normal(0.0, 4.0, size=(129, 30, 40))
    scale = pixel_noise_scale(frames[:-1:2], frames[1::2])
    assert scale.shape == (30, 40) and scale.dtype == np.float32
    assert 3.6 < float(np.median(scale)) < 4.4


def test_someone_standing_still_is_not_noise() -> None:
    """A pixel covered by a still object for 40 % of the pairs keeps its noise sigma."""
    rng = np.random.default_rng(RNG_SEED)
    frames = 100 + rng.normal(0.0, 2.0, size=(101, 20, 20))
    frames[20:60, 5:15, 5:15] += 80  # arrives, stands for 40 frames, leaves
    scale = pixel_noise_scale(frames[:-1], frames[1:])
    assert float(scale[5:15, 5:15].max()) < 1.5 * float(np.median(scale[:5]))
    # the residual's own scale over time would have taken it for noise
    residual_scale = 1.4826 * np.median(np.abs(frames - np.median(frames, axis=0)), axis=0)
    assert float(residual_scale[10, 10]) > 2 * float(scale[10, 10])


@pytest.mark.parametrize("n_pairs", [1, 2, 3, 31, 64])
@pytest.mark.parametrize("largest_change", [4, 20, 256])
def test_pixel_noise_scale_of_uint8_is_exactly_the_median_of_the_changes(
    n_pairs: int, largest_change: int
) -> None:
    """Counted below 16 grey levels, np.median above: the same numbers either way."""
    rng = np.random.default_rng(n_pairs * 1000 + largest_change)
    first = rng.integers(0, 256, (n_pairs, 9, 11)).astype(np.uint8)
    change = rng.integers(-largest_change + 1, largest_change, first.shape)
    second = np.clip(first.astype(np.int64) + change, 0, 255).astype(np.uint8)
    expected = np.median(np.abs(second.astype(np.int64) - first), axis=0) * (1.4826 / np.sqrt(2))
    np.testing.assert_array_equal(pixel_noise_scale(first, second), expected.astype(np.float32))
    np.testing.assert_array_equal(pixel_noise_scale(second, first), expected.astype(np.float32))


def test_pixel_noise_scale_of_color_is_the_largest_channel_and_shapes_are_checked() -> None:
    first = np.zeros((3, 4, 5, 3), dtype=np.uint8)
    second = first.copy()
    second[..., 2] = 10
    np.testing.assert_allclose(pixel_noise_scale(first, second), 10 * 1.4826 / np.sqrt(2), rtol=1e-5)
    with pytest.raises(InvalidParameterError, match="one shape"):
        pixel_noise_scale(first, second[:2])
    with pytest.raises(InvalidParameterError, match="one shape"):
        pixel_noise_scale(np.zeros((4, 5)), np.zeros((4, 5)))


def test_threshold_map_raises_only_the_pixels_that_vary_more() -> None:
    scale = np.array([[1.0, 5.0], [10.0, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(threshold_map(12.0, scale), [[12.0, 15.0], [30.0, 12.0]])
    assert PIXEL_NOISE_FACTOR == 3.0


def test_masks_take_a_threshold_map_and_refuse_a_bad_one() -> None:
    foreground = np.full((2, 2, 3), 20.0)
    levels = np.array([[10.0, 30.0, 10.0], [30.0, 10.0, 10.0]], dtype=np.float32)
    lazy = masks(da.from_array(foreground, chunks=(1, 2, 3)), threshold=levels, cleanup=False).compute()
    np.testing.assert_array_equal(lazy[0], np.where(levels < 20, 255, 0))
    np.testing.assert_array_equal(lazy, mask_block(foreground, threshold=levels, cleanup=False))
    for bad in (
        np.ones((3, 2), np.float32),
        np.zeros((2, 3), np.float32),
        np.full((2, 3), np.nan, np.float32),
    ):
        with pytest.raises(InvalidParameterError, match="threshold map"):
            masks(da.from_array(foreground), threshold=bad)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_map_keeps_swaying_leaves_out_of_the_masks(seed: int) -> None:
    """Foliage over a fifth of the image and objects of half contrast: the map wins F."""
    spec = SceneSpec(
        width=160,
        height=120,
        n_frames=100,
        n_objects=4,
        noise_sigma=3.0,
        swaying_fraction=0.2,
        object_contrast=0.5,
        seed=seed,
    )
    rendered = list(render_scene(spec))
    frames = np.stack([frame for frame, _ in rendered])
    truth = np.stack([mask for _, mask in rendered]) == 255
    foreground = frames - np.median(frames, axis=0)
    threshold = auto_threshold(foreground[sample_frames(spec.n_frames, 16)])
    firsts = noise_pair_frames(spec.n_frames)
    scale = pixel_noise_scale(frames[firsts], frames[firsts + 1])
    leaves = sway_region(spec, spec.swaying_fraction)
    assert float(np.median(scale[leaves])) > 3 * float(np.median(scale[~leaves]))

    def f_measure(levels: float | np.ndarray) -> float:
        found = mask_block(foreground, threshold=levels, cleanup=True) == 255
        tp = np.count_nonzero(found & truth)
        return 2 * tp / (2 * tp + np.count_nonzero(found & ~truth) + np.count_nonzero(~found & truth))

    levels = threshold_map(threshold, scale)
    raised = levels > threshold
    assert np.count_nonzero(raised & ~leaves) < 0.01 * raised.size  # still pixels keep the global one
    assert f_measure(levels) > f_measure(threshold) + 0.02  # measured: +0.035 to +0.045


def test_noise_scale_of_a_dask_video_is_computed_in_bands_and_equals_numpy() -> None:
    rng = np.random.default_rng(RNG_SEED)
    frames = rng.integers(0, 256, size=(30, 37, 21), dtype=np.uint8)
    firsts = noise_pair_frames(30, 10)
    lazy = noise_scale_of(da.from_array(frames, chunks=(7, 37, 21)), firsts)
    assert lazy.numblocks == (8, 1)  # bands of image rows, one task each
    np.testing.assert_array_equal(lazy.compute(), pixel_noise_scale(frames[firsts], frames[firsts + 1]))
    # uint8 frames are differenced exactly, as floats would be
    np.testing.assert_allclose(
        pixel_noise_scale(frames[:-1], frames[1:]),
        pixel_noise_scale(frames[:-1].astype(np.float32), frames[1:].astype(np.float32)),
        rtol=1e-6,
    )
