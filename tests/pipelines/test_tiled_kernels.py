"""Kernels that work a tile of pixels at a time give what the whole-chunk float path gives."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import pipelines.separate as separate_kernels
from pipelines.factor_masks import factor_mask_block, masks_from_factors
from pipelines.masks import masks
from pipelines.separate import (
    background_frames,
    foreground_block,
    foreground_frames,
    low_rank_product,
    to_storage_foreground,
)
from storage.errors import InvalidParameterError
from tests.helpers import moving_square_frames

HEIGHT, WIDTH, N_FRAMES = 48, 64, 40


def _scene(seed: int = 0) -> np.ndarray:
    """Moving squares on a texture, with noise and a slow gain drift: a foreground of every size."""
    rng = np.random.default_rng(seed)
    frames = moving_square_frames(N_FRAMES, HEIGHT, WIDTH, seed=seed).astype(np.float32)
    frames *= np.linspace(0.9, 1.1, N_FRAMES, dtype=np.float32)[:, None, None]
    frames += rng.normal(0.0, 6.0, frames.shape).astype(np.float32)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def _factors(frames: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    matrix = frames.reshape(frames.shape[0], -1).T.astype(np.float64)
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    return u[:, :k].astype(np.float32), s[:k].astype(np.float32), vt[:k].astype(np.float32)


def _float_path(
    frames: np.ndarray, u: np.ndarray, s: np.ndarray, vt: np.ndarray, threshold: object
) -> np.ndarray:
    lazy = da.from_array(frames, chunks=(16, -1, -1))
    k = int(s.shape[0])
    background = background_frames(u, s, vt, rank=k, height=HEIGHT, width=WIDTH, frame_chunks=lazy.chunks[0])
    return np.asarray(masks(foreground_frames(lazy, background), threshold=threshold).compute())  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("per_pixel", [False, True])
def test_the_tiled_masks_are_the_masks_of_the_float_path(
    k: int, per_pixel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(separate_kernels, "TILE_BYTES", 4096)  # many tiles, and a last short one
    frames = _scene(seed=k)
    u, s, vt = _factors(frames, k)
    threshold: float | np.ndarray = 18.0
    if per_pixel:
        threshold = np.full((HEIGHT, WIDTH), 18.0, dtype=np.float32)
        threshold[:, : WIDTH // 3] = 40.0  # a noisy band, as threshold_map raises it
    expected = _float_path(frames, u, s, vt, threshold)
    lazy = da.from_array(frames, chunks=(16, -1, -1))
    tiled = masks_from_factors(
        lazy, da.from_array(u), da.from_array(s), da.from_array(vt), threshold=threshold
    )
    assert tiled.chunks == lazy.chunks and tiled.dtype == np.uint8
    got = np.asarray(tiled.compute())
    assert 0.01 < np.mean(got == 255) < 0.5, "the scene must have a foreground to compare"
    if k == 1:
        np.testing.assert_array_equal(got, expected)  # the same float32 arithmetic, element by element
    else:  # BLAS may add the k terms in another order: a pixel at the threshold may flip
        assert np.mean(got != expected) < 1e-4


@pytest.mark.parametrize("k", [1, 3])
def test_the_tiled_int16_foreground_is_the_float_paths(k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(separate_kernels, "TILE_BYTES", 4096)
    frames = _scene(seed=10 + k)
    u, s, vt = _factors(frames, k)
    lazy = da.from_array(frames, chunks=(16, -1, -1))
    background = background_frames(u, s, vt, rank=k, height=HEIGHT, width=WIDTH, frame_chunks=lazy.chunks[0])
    expected = np.asarray(to_storage_foreground(foreground_frames(lazy, background)).compute())
    got = foreground_block(frames, u, s, vt)
    assert got.dtype == np.int16 and got.shape == frames.shape
    if k == 1:
        np.testing.assert_array_equal(got, expected)
    else:  # the k terms in another order: a value at .5 may round the other way
        assert np.abs(got.astype(np.int32) - expected).max() <= 1 and np.mean(got != expected) < 1e-3


def test_the_int16_foreground_rounds_half_to_even_and_saturates() -> None:
    frames = np.random.default_rng(3).integers(0, 256, (5, HEIGHT, WIDTH)).astype(np.uint8)
    u = np.full((HEIGHT * WIDTH, 1), 1.0, dtype=np.float32)
    weights = np.array([0.5, 1.5, -40_000.0, 40_000.0, 100.25], dtype=np.float32)  # halves and beyond int16
    got = foreground_block(frames, u, np.ones(1, dtype=np.float32), weights[None, :])
    difference = frames.astype(np.float32) - weights[:, None, None]
    expected = np.clip(np.rint(difference), -32768, 32767).astype(np.int16)
    np.testing.assert_array_equal(got, expected)
    assert got[2].min() == 32767 and got[3].max() == -32768


def test_a_block_without_cleanup_is_the_bare_comparison() -> None:
    frames = _scene()
    u, s, vt = _factors(frames, 1)
    background = (u @ (s[:, None] * vt)).T.reshape(frames.shape)
    expected = np.where(np.abs(frames.astype(np.float32) - background) > 10.0, 255, 0)
    got = factor_mask_block(frames, u, s, vt, threshold=10.0, cleanup=False)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("k", [1, 3])
def test_the_low_rank_product_is_the_matrix_product(k: int) -> None:
    rng = np.random.default_rng(k)
    weights = rng.random((5, k), dtype=np.float32)
    basis = rng.random((k, 300), dtype=np.float32)
    out = np.empty((5, 300), dtype=np.float32)
    assert low_rank_product(weights, basis, out=out) is out
    np.testing.assert_allclose(out, weights @ basis, rtol=1e-6)
    np.testing.assert_allclose(
        low_rank_product(weights, basis[:, 7:100]), weights @ basis[:, 7:100], rtol=1e-6
    )


def test_bad_frames_factors_or_thresholds_are_refused_in_one_line() -> None:
    frames = da.from_array(_scene(), chunks=(16, -1, -1))
    u, s, vt = (da.from_array(a) for a in _factors(_scene(), 2))
    with pytest.raises(InvalidParameterError, match=r"gray uint8 frames"):
        masks_from_factors(frames.astype(np.float32), u, s, vt, threshold=10.0)
    with pytest.raises(InvalidParameterError, match=r"do not fit 40 frames of 48x64"):
        masks_from_factors(frames, u, s, vt[:, :10], threshold=10.0)
    with pytest.raises(InvalidParameterError, match=r"\(P, k\), \(k,\) and \(k, frame\)"):
        masks_from_factors(frames, u, s[:, None], vt, threshold=10.0)
    with pytest.raises(InvalidParameterError, match=r"positive number"):
        masks_from_factors(frames, u, s, vt, threshold=-1.0)
    with pytest.raises(InvalidParameterError, match=r"a frame's shape"):
        masks_from_factors(frames, u, s, vt, threshold=np.ones((4, 4), dtype=np.float32))
