"""Background, foreground and masks from the factors: values, chunking, laziness, errors."""

# U, Vt, M: DESIGN.md's names
# ruff: noqa: N806

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

from pipelines.mask_cleanup import fill_holes
from pipelines.masks import AUTO_THRESHOLD_MIN, auto_threshold, masks, sample_frames, threshold_sample_stride
from pipelines.separate import (
    apply_factors,
    background_frames,
    background_images,
    foreground_frames,
    to_storage_foreground,
)
from pipelines.synthetic import MIN_CONTRAST, SceneSpec, render_background, render_scene
from storage.errors import InvalidParameterError
from tests.helpers import filled_to_one_edge, raise_if_dask_computes

HEIGHT, WIDTH, N_FRAMES, SIDE = 12, 16, 10, 4


def square_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A textured background (40-160) and a 230 square moving right: frames, background, truth."""
    rng = np.random.default_rng(7)
    background = rng.integers(40, 161, size=(HEIGHT, WIDTH)).astype(np.uint8)
    frames = np.repeat(background[None], N_FRAMES, axis=0)
    truth = np.zeros(frames.shape, dtype=bool)
    for t in range(N_FRAMES):
        x0 = t % (WIDTH - SIDE)
        frames[t, 4 : 4 + SIDE, x0 : x0 + SIDE] = 230
        truth[t, 4 : 4 + SIDE, x0 : x0 + SIDE] = True
    return frames, background, truth


def exact_rank1(background: np.ndarray, n_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rank-1 factors of a video that is ``background`` in every frame."""
    column = background.reshape(-1).astype(np.float64)
    norm = np.linalg.norm(column)
    U = (column / norm)[:, None].astype(np.float32)
    s = np.array([norm * np.sqrt(n_frames)], dtype=np.float32)
    Vt = np.full((1, n_frames), 1 / np.sqrt(n_frames), dtype=np.float32)
    return U, s, Vt


def numpy_svd(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    M = frames.reshape(frames.shape[0], -1).T.astype(np.float64)
    U, s, Vt = np.linalg.svd(M, full_matrices=False)
    return U.astype(np.float32), s.astype(np.float32), Vt.astype(np.float32)


# --- background_frames -----------------------------------------------------------------


def test_background_frames_match_numpy_and_follow_vt_chunks() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(N_FRAMES, HEIGHT, WIDTH), dtype=np.uint8)
    U, s, Vt = numpy_svd(frames)
    dU = da.from_array(U, chunks=(50, 3))
    dVt = da.from_array(Vt, chunks=(4, 3))
    with raise_if_dask_computes():
        background = background_frames(dU, s, dVt, rank=3, height=HEIGHT, width=WIDTH)
    assert background.shape == (N_FRAMES, HEIGHT, WIDTH)
    assert background.dtype == np.float32
    assert background.chunks == ((3, 3, 3, 1), (HEIGHT,), (WIDTH,))
    expected = ((U[:, :3] * s[:3]) @ Vt[:3]).T.reshape(N_FRAMES, HEIGHT, WIDTH)
    np.testing.assert_allclose(background.compute(), expected, atol=1e-3)


def test_background_frames_follow_the_frame_chunks_given() -> None:
    """Stored Vt is one chunk of every frame; the video's chunks bound each task instead."""
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, size=(N_FRAMES, HEIGHT, WIDTH), dtype=np.uint8)
    U, s, Vt = numpy_svd(frames)
    whole_vt = da.from_array(Vt, chunks=-1)
    with raise_if_dask_computes():
        background = background_frames(
            U, s, whole_vt, rank=2, height=HEIGHT, width=WIDTH, frame_chunks=(4, 4, 2)
        )
    assert background.chunks[0] == (4, 4, 2)
    assert background.numblocks[0] == 3
    expected = ((U[:, :2] * s[:2]) @ Vt[:2]).T.reshape(N_FRAMES, HEIGHT, WIDTH)
    np.testing.assert_allclose(background.compute(), expected, atol=1e-3)
    for wrong in ((4, 4), (0, 10), (5, 5, 1)):
        with pytest.raises(InvalidParameterError, match="frame_chunks"):
            background_frames(U, s, whole_vt, rank=2, height=HEIGHT, width=WIDTH, frame_chunks=wrong)


def test_background_frames_of_color_factors_are_rgb_frames() -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(6, 5, 4, 3), dtype=np.uint8)
    U, s, Vt = numpy_svd(frames)
    background = background_frames(U, s, Vt, rank=6, height=5, width=4)
    assert background.shape == (6, 5, 4, 3)
    np.testing.assert_allclose(background.compute(), frames, atol=1e-2)


@pytest.mark.parametrize(
    ("rank", "height", "width"),
    [(0, HEIGHT, WIDTH), (N_FRAMES + 1, HEIGHT, WIDTH), (2.0, HEIGHT, WIDTH), (1, HEIGHT + 1, WIDTH)],
)
def test_background_frames_refuse_bad_rank_or_size(rank: object, height: int, width: int) -> None:
    U, s, Vt = numpy_svd(np.zeros((N_FRAMES, HEIGHT, WIDTH), dtype=np.uint8) + 1)
    with pytest.raises(InvalidParameterError):
        background_frames(U, s, Vt, rank=rank, height=height, width=width)  # type: ignore[arg-type]


def test_background_frames_refuse_factors_that_do_not_fit() -> None:
    U, s, Vt = numpy_svd(np.ones((N_FRAMES, HEIGHT, WIDTH), dtype=np.uint8))
    with pytest.raises(InvalidParameterError, match="components"):
        background_frames(U, s[:-1], Vt, rank=1, height=HEIGHT, width=WIDTH)


# --- foreground and masks --------------------------------------------------------------


def test_foreground_of_a_rank1_background_is_the_moving_square() -> None:
    frames, background, truth = square_scene()
    U, s, Vt = exact_rank1(background, N_FRAMES)
    video = da.from_array(frames, chunks=(4, HEIGHT, WIDTH))
    with raise_if_dask_computes():
        low_rank = background_frames(
            U, s, da.from_array(Vt, chunks=(1, 3)), rank=1, height=HEIGHT, width=WIDTH
        )
        foreground = foreground_frames(video, low_rank)
        mask = masks(foreground, threshold=20.0, cleanup=False)
        stored = to_storage_foreground(foreground)
    assert foreground.chunks == video.chunks  # aligned with the stored video
    expected = np.where(truth, 230.0 - background[None].astype(np.float32), 0.0)
    np.testing.assert_allclose(foreground.compute(), expected, atol=1e-3)
    assert stored.dtype == np.int16
    np.testing.assert_array_equal(stored.compute(), np.rint(expected).astype(np.int16))
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask.compute(), truth.astype(np.uint8) * 255)


def test_foreground_refuses_non_uint8_frames_and_other_shapes() -> None:
    frames = da.zeros((3, 4, 5), dtype=np.uint8)
    with pytest.raises(InvalidParameterError, match="uint8"):
        foreground_frames(frames.astype(np.float32), da.zeros((3, 4, 5)))
    with pytest.raises(InvalidParameterError, match="same shape"):
        foreground_frames(frames, da.zeros((3, 5, 4)))
    with pytest.raises(InvalidParameterError, match="dask array"):
        foreground_frames(np.zeros((3, 4, 5), dtype=np.uint8), da.zeros((3, 4, 5)))  # type: ignore[arg-type]


def test_storage_foreground_rounds_and_clips_to_int16() -> None:
    values = da.from_array(np.array([-40000.0, -1.5, -0.4, 0.6, 2.5, 40000.0], dtype=np.float32))
    np.testing.assert_array_equal(to_storage_foreground(values).compute(), [-32768, -2, 0, 1, 2, 32767])


def test_mask_cleanup_removes_speckle_and_fills_pinholes() -> None:
    fg = np.zeros((2, 16, 20), dtype=np.float32)
    fg[0, 1, 1] = 100  # isolated pixel
    fg[0, 10, 3:5] = -100  # two-pixel speck, negative: |fg| counts
    fg[0, 5:11, 10:16] = 100  # a 6x6 object ...
    fg[0, 7, 12] = 0  # ... with a pinhole
    fg[1, 0:5, 15:20] = 100  # an object in the corner, touching the border
    fg[1, 12, 0] = 100  # speckle on the border
    dfg = da.from_array(fg, chunks=(1, 8, 20))
    raw = masks(dfg, threshold=50.0, cleanup=False).compute()
    np.testing.assert_array_equal(raw, (np.abs(fg) > 50).astype(np.uint8) * 255)
    cleaned = masks(dfg, threshold=50.0).compute()
    expected = np.zeros(fg.shape, dtype=np.uint8)
    expected[0, 5:11, 10:16] = 255  # pinhole filled ...
    for y, x in ((5, 10), (5, 15), (10, 10), (10, 15)):
        expected[0, y, x] = 0  # ... sharp corners rounded by the 3x3 majority vote
    expected[1, 0:5, 15:20] = 255
    expected[1, 4, 15] = 0  # the only corner not on the border
    np.testing.assert_array_equal(cleaned, expected)


@pytest.mark.parametrize("shape", [(3, 17, 23), (2, 1, 9), (2, 5, 1), (1, 1, 1), (1, 2, 2)])
@pytest.mark.parametrize("density", [0.1, 0.5, 0.9])
def test_mask_cleanup_equals_scipys_median_filter_then_filling_to_one_edge(
    shape: tuple[int, int, int], density: float
) -> None:
    from scipy import ndimage

    fg = np.where(np.random.default_rng(7).random(shape) < density, 100.0, 0.0).astype(np.float32)
    cleaned = masks(da.from_array(fg), threshold=50.0).compute()
    median = ndimage.median_filter(fg > 50, size=(1, 3, 3), mode="nearest")
    filled = filled_to_one_edge(median)
    np.testing.assert_array_equal(cleaned, filled.astype(np.uint8) * 255)


def test_fill_holes_fills_each_frame_as_scipy_does_and_only_enclosed_background() -> None:
    from scipy import ndimage

    ring = np.zeros((3, 12, 14), dtype=bool)
    ring[:, 2:10, 3:11] = True
    ring[:, 4:8, 5:9] = False  # a 4x4 hole in every frame, the first and last included
    ring[1, 4:8, 3] = False  # frame 1: the hole opens onto the outside (not a hole any more)
    ring[1, 4:8, 4] = False
    filled = fill_holes(ring)
    assert filled[0, 4:8, 5:9].all() and filled[2, 4:8, 5:9].all()
    assert not filled[1, 4:8, 5:9].any()
    assert not filled[:, 0, :].any()  # the frame's own background stays background
    noisy = np.random.default_rng(3).random((4, 30, 40)) < 0.45
    expected = np.stack([ndimage.binary_fill_holes(frame) for frame in noisy])
    np.testing.assert_array_equal(fill_holes(noisy), expected)
    assert fill_holes(np.zeros((0, 3, 3), dtype=bool)).shape == (0, 3, 3)
    with pytest.raises(InvalidParameterError, match="frame, y, x"):
        fill_holes(np.zeros((3, 3), dtype=bool))


def test_masks_are_lazy_whole_frames_and_combine_color_channels() -> None:
    fg = np.zeros((4, 6, 7, 3), dtype=np.float32)
    fg[1, 2, 3, 2] = -90
    dfg = da.from_array(fg, chunks=(2, 3, 7, 3))
    with raise_if_dask_computes():
        mask = masks(dfg, threshold=10, cleanup=False)
    assert mask.shape == (4, 6, 7)
    assert mask.chunks == ((2, 2), (6,), (7,))
    computed = mask.compute()
    assert computed[1, 2, 3] == 255
    assert computed.sum() == 255


@pytest.mark.parametrize("threshold", [0, -1.0, float("nan"), float("inf"), "10", True])
def test_masks_refuse_a_bad_threshold(threshold: object) -> None:
    with pytest.raises(InvalidParameterError, match="threshold"):
        masks(da.zeros((1, 4, 4)), threshold=threshold)  # type: ignore[arg-type]


# --- auto threshold --------------------------------------------------------------------


def test_sample_frames_spread_over_the_video() -> None:
    np.testing.assert_array_equal(sample_frames(100, 5), [0, 25, 50, 74, 99])
    np.testing.assert_array_equal(sample_frames(3, 10), [0, 1, 2])
    np.testing.assert_array_equal(sample_frames(7, 1), [0])
    with pytest.raises(InvalidParameterError):
        sample_frames(0, 3)
    with pytest.raises(InvalidParameterError):
        sample_frames(10, 0)


def test_auto_threshold_separates_the_objects_of_a_synthetic_scene() -> None:
    spec = SceneSpec(width=64, height=48, n_frames=60, n_objects=3, noise_sigma=2.0, seed=5)
    rendered = list(render_scene(spec))
    frames = np.stack([f for f, _ in rendered])
    truth = np.stack([m for _, m in rendered]) == 255
    # the temporal median, where the default (robust) model starts: the rule is made for a
    # residual of noise, not for the ghosts a rank-1 SVD of so small a scene leaves
    plate = np.median(frames, axis=0).astype(np.float32)
    video = da.from_array(frames, chunks=(20, 48, 64))
    foreground = foreground_frames(
        video, da.broadcast_to(da.from_array(plate), frames.shape, chunks=(20, 48, 64))
    )
    sample = foreground[sample_frames(spec.n_frames, 8)].compute()
    threshold = auto_threshold(sample)
    # above the noise, below the least contrast an object has against the background
    assert 3 * spec.noise_sigma < threshold < MIN_CONTRAST + 20
    found = masks(foreground, threshold=threshold).compute() == 255
    tp = np.count_nonzero(found & truth)
    f_measure = 2 * tp / (2 * tp + np.count_nonzero(found & ~truth) + np.count_nonzero(~found & truth))
    assert f_measure > 0.9


def test_auto_threshold_still_finds_objects_that_cover_most_of_the_frame() -> None:
    # 40 objects over 64 x 48 pixels cover two thirds of each frame: the median absolute
    # deviation of the residual measures the objects, and 3 of its sigmas (260 grey
    # levels here) would pass every residual and leave the masks empty
    spec = SceneSpec(width=64, height=48, n_frames=60, n_objects=40, noise_sigma=2.0, seed=5)
    rendered = list(render_scene(spec))
    frames = np.stack([f for f, _ in rendered])
    truth = np.stack([m for _, m in rendered]) == 255
    assert truth.mean() > 0.6
    foreground = frames.astype(np.float32) - np.median(frames, axis=0).astype(np.float32)
    threshold = auto_threshold(foreground[sample_frames(spec.n_frames, 8)])
    assert 3 * spec.noise_sigma < threshold < MIN_CONTRAST + 20
    found = masks(da.from_array(foreground, chunks=(20, 48, 64)), threshold=threshold).compute() == 255
    tp = np.count_nonzero(found & truth)
    f_measure = 2 * tp / (2 * tp + np.count_nonzero(found & ~truth) + np.count_nonzero(~found & truth))
    assert f_measure > 0.8


@pytest.mark.parametrize("sigma", [1.0, 1.5, 3.0, 4.0, 8.0])
@pytest.mark.parametrize("whole_levels", [False, True])
def test_auto_threshold_keeps_pure_noise_out(sigma: float, whole_levels: bool) -> None:
    noise = np.random.default_rng(3).normal(0.0, sigma, size=(8, 40, 50))
    if whole_levels:  # as a residual of uint8 frames and a uint8 plate is
        noise = np.rint(noise)
    threshold = auto_threshold(noise)
    # the 3-sigma floor, not Otsu's split of noise (rounding moves the robust sigma of
    # small noise by up to half a grey level)
    assert 3 * sigma * 0.9 - 1.5 < threshold < 3 * sigma * 1.2 + 1.5
    assert np.mean(np.abs(noise) > threshold) < 0.01


def test_auto_threshold_of_a_still_residual_is_the_least_threshold() -> None:
    assert auto_threshold(np.zeros((2, 3, 3))) == AUTO_THRESHOLD_MIN


def test_auto_threshold_refuses_dask_empty_and_nan_samples() -> None:
    with raise_if_dask_computes(), pytest.raises(InvalidParameterError, match="compute"):
        auto_threshold(da.zeros((2, 3, 3)))
    with pytest.raises(InvalidParameterError, match="empty"):
        auto_threshold(np.zeros((0, 3)))
    with pytest.raises(InvalidParameterError, match="NaN"):
        auto_threshold(np.array([1.0, np.nan]))


# --- background images per segment ------------------------------------------------------


def test_two_segments_give_each_its_own_background() -> None:
    spec = SceneSpec(width=48, height=32, n_frames=40, cut_at=24, n_objects=1, noise_sigma=1.0, seed=3)
    frames = np.stack([f for f, _ in render_scene(spec)])
    U, s, Vt = numpy_svd(frames)
    with raise_if_dask_computes():
        images = background_images(
            da.from_array(U, chunks=(500, 2)),
            s,
            Vt,
            rank=2,
            height=32,
            width=48,
            segments=[(0, 24), (24, 40)],
        )
    assert len(images) == 2
    truths = [render_background(spec, segment).astype(np.float64) for segment in (0, 1)]
    for segment, image in enumerate(images):
        computed = image.compute()
        assert computed.shape == (32, 48)
        assert computed.dtype == np.float32
        own = np.abs(computed - truths[segment]).mean()
        other = np.abs(computed - truths[1 - segment]).mean()
        assert own < 5.0 < 15.0 < other


def test_background_image_is_the_mean_of_the_background_frames() -> None:
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 256, size=(N_FRAMES, HEIGHT, WIDTH), dtype=np.uint8)
    U, s, Vt = numpy_svd(frames)
    (image,) = background_images(U, s, Vt, rank=4, height=HEIGHT, width=WIDTH, segments=[(2, 7)])
    expected = background_frames(U, s, Vt, rank=4, height=HEIGHT, width=WIDTH)[2:7].mean(axis=0)
    np.testing.assert_allclose(image.compute(), expected.compute(), atol=1e-3)


@pytest.mark.parametrize("segment", [(5, 5), (-1, 3), (0, N_FRAMES + 1), (0,), (0.0, 3)])
def test_background_images_refuse_bad_segments(segment: tuple[int, ...]) -> None:
    U, s, Vt = numpy_svd(np.ones((N_FRAMES, HEIGHT, WIDTH), dtype=np.uint8))
    with pytest.raises(InvalidParameterError, match="segment"):
        background_images(U, s, Vt, rank=1, height=HEIGHT, width=WIDTH, segments=[segment])  # type: ignore[list-item]


# --- new footage -------------------------------------------------------------------------


def test_apply_factors_projects_out_the_background_subspace() -> None:
    frames, background, _ = square_scene()
    U, _, _ = exact_rank1(background, N_FRAMES)
    new = np.roll(frames, 3, axis=2)[:, ::-1].copy()  # other footage, same camera
    video = da.from_array(new, chunks=(3, 6, WIDTH))
    with raise_if_dask_computes():
        foreground = apply_factors(video, da.from_array(U), rank=1)
    assert foreground.shape == new.shape
    assert foreground.dtype == np.float32
    assert foreground.chunks == ((3, 3, 3, 1), (HEIGHT,), (WIDTH,))
    x = new.reshape(N_FRAMES, -1).astype(np.float64)
    expected = x - (x @ U.astype(np.float64)) @ U.T.astype(np.float64)
    np.testing.assert_allclose(foreground.compute().reshape(N_FRAMES, -1), expected, atol=1e-2)
    # footage that is the background exactly has no foreground
    still = da.from_array(np.repeat(background[None], 2, axis=0))
    np.testing.assert_allclose(apply_factors(still, U, rank=1).compute(), 0.0, atol=1e-3)


def test_apply_factors_refuses_footage_of_another_size() -> None:
    U = np.eye(HEIGHT * WIDTH, 2, dtype=np.float32)
    with pytest.raises(InvalidParameterError, match="pixels"):
        apply_factors(da.zeros((2, HEIGHT, WIDTH + 1), dtype=np.uint8), U, rank=1)
    with pytest.raises(InvalidParameterError, match="rank"):
        apply_factors(da.zeros((2, HEIGHT, WIDTH), dtype=np.uint8), U, rank=3)


# --- the notebook's video ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.shared_data
def test_bmc2012_masks_match_the_ground_truth(shared_data: Path) -> None:
    """Rank-1 background, automatic threshold, cleaned masks: F-measure as documented."""
    from pipelines.scores import Scores, cdnet_scores
    from storage.truth import read_truth_masks
    from storage.video_decoder import DecodeOptions, decode_blocks, probe_video

    folder = shared_data / "bmc2012-video003"
    info = probe_video(folder / "Video_003.avi")
    frames = np.concatenate(list(decode_blocks(info, DecodeOptions(width=320, height=240), block_frames=100)))
    video = da.from_array(frames, chunks=(100, 240, 320))
    M = video.reshape(frames.shape[0], -1).T.astype(np.float32)
    U, s, Vt = dask.compute(*da.linalg.svd_compressed(M, k=3, iterator="QR", n_power_iter=2, seed=0))
    foreground = foreground_frames(video, background_frames(U, s, Vt, rank=1, height=240, width=320))
    threshold = auto_threshold(foreground[sample_frames(frames.shape[0], 20)].compute())
    assert 20 < threshold < 80  # half of Otsu's split: 28 here; 25-30 is the best range
    truth = read_truth_masks(
        folder / "private_truth", frame_map=folder / "gt_frame_map.csv", shape=(240, 320)
    )
    indices = [frame for frame, _ in truth]
    found = masks(foreground[indices], threshold=threshold).compute()
    scores = sum((cdnet_scores(f, t) for f, (_, t) in zip(found, truth, strict=True)), Scores())
    assert scores.f_measure > 0.8


@pytest.mark.parametrize("shape", [(3, 60, 80), (5, 1000, 1000), (9, 1000, 1000), (7, 777, 1001)])
def test_a_lazy_sample_sliced_at_the_stride_gives_the_threshold_of_the_whole_sample(
    shape: tuple[int, int, int],
) -> None:
    # noise with a bright object in part of every frame: Otsu, the MAD and the floor all
    # depend on which values are kept; strides 1, 2, 3 (1e6 frames not a multiple of 3)
    # and 2 (an odd frame size)
    rng = np.random.default_rng(4)
    sample = rng.normal(0.0, 3.0, size=shape).astype(np.float32)
    sample[:, : shape[1] // 3, : shape[2] // 4] += 60.0
    lazy = da.from_array(sample, chunks=(2, -1, -1))
    stride = threshold_sample_stride(lazy.size)
    assert stride == max(1, -(-sample.size // (1 << 22)))
    sliced = lazy.reshape(-1)[::stride].compute()
    assert sliced.size <= 1 << 22
    assert auto_threshold(sliced) == auto_threshold(sample)


def test_the_stride_is_one_up_to_four_million_values_then_the_least_that_fits() -> None:
    assert threshold_sample_stride(1) == 1
    assert threshold_sample_stride(1 << 22) == 1
    assert threshold_sample_stride((1 << 22) + 1) == 2
    assert threshold_sample_stride(24 * 720 * 1280) == 6
