"""The fused randomized SVD against numpy and against the QR iterator it replaces."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
from dask.callbacks import Callback

from pipelines.decompose import SvdParameters, randomized_svd
from pipelines.fused_svd import fused_randomized_svd, svqb_transform
from pipelines.matrix import video_matrix
from storage.errors import InvalidParameterError
from tests.helpers import raise_if_dask_computes

RANK = 5
T, H, W = 240, 30, 40  # M is 1200 x 240


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """uint8 frames of a rank-5 scene with well separated components, plus noise."""
    rng = np.random.default_rng(7)
    images = rng.uniform(0, 1, (RANK, H * W))
    weights = np.stack([np.full(T, 120.0), *(rng.standard_normal((RANK - 1, T)) * [[40], [25], [15], [8]])])
    clean = weights.T @ images + 40
    noisy = clean + rng.normal(0, 2, clean.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8).reshape(T, H, W)


def _optimal(matrix: np.ndarray) -> tuple[np.ndarray, float]:
    s = np.linalg.svd(matrix, compute_uv=False)
    return s, float(np.sqrt((s[RANK:] ** 2).sum() / (s**2).sum()))


def _error(matrix: np.ndarray, u: np.ndarray, s: np.ndarray, vt: np.ndarray) -> float:
    residual = matrix - (u.astype(np.float64) * s) @ vt.astype(np.float64)
    return float(np.linalg.norm(residual) / np.linalg.norm(matrix))


@pytest.mark.parametrize("chunk", [17, 60, T])
def test_fused_meets_the_accuracy_contract_and_matches_the_qr_iterator(
    frames: np.ndarray, chunk: int
) -> None:
    matrix = frames.reshape(T, -1).T.astype(np.float64)
    s_ref, optimal = _optimal(matrix)
    lazy = da.from_array(frames, chunks=(chunk, H, W))
    params = SvdParameters(rank=RANK, iteration="fused")
    u, s, vt = dask.compute(*fused_randomized_svd(lazy, params), scheduler="threads")
    assert u.shape == (H * W, RANK) and s.shape == (RANK,) and vt.shape == (RANK, T)
    assert u.dtype == s.dtype == vt.dtype == np.float32
    assert _error(matrix, u, s, vt) <= optimal * 1.01
    np.testing.assert_allclose(s, s_ref[:RANK], rtol=1e-3)
    np.testing.assert_allclose(u.T @ u, np.eye(RANK), atol=1e-4)
    np.testing.assert_allclose(vt @ vt.T, np.eye(RANK), atol=1e-4)
    # the same subspace as dask's QR iterator from the same sketch
    qr = dask.compute(*randomized_svd(video_matrix(lazy), params), scheduler="threads")
    np.testing.assert_allclose(s, qr[1], rtol=1e-4)
    np.testing.assert_allclose(np.abs(u.T @ qr[0]), np.eye(RANK), atol=1e-3)


def test_fused_is_lazy_deterministic_and_float_input_gives_the_same(frames: np.ndarray) -> None:
    lazy = da.from_array(frames, chunks=(50, H, W))
    params = SvdParameters(rank=RANK, iteration="fused", seed=3)
    with raise_if_dask_computes():
        factors = fused_randomized_svd(lazy, params)
    first = dask.compute(*factors, scheduler="threads")
    again = dask.compute(*fused_randomized_svd(lazy, params), scheduler="threads")
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    as_float = dask.compute(
        *fused_randomized_svd(lazy.astype(np.float32), params, keep_in_memory=True), scheduler="threads"
    )
    for a, b in zip(first, as_float, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("per_chain", [2, 3, 6])
def test_chains_of_partials_change_only_the_rounding_and_are_deterministic(
    frames: np.ndarray, per_chain: int
) -> None:
    lazy = da.from_array(frames, chunks=(20, H, W))  # 12 chunks, 6 groups of 2
    params = SvdParameters(rank=RANK, iteration="fused", seed=1)
    unchained = dask.compute(*fused_randomized_svd(lazy, params, frames_per_task=40), scheduler="threads")
    chained = dask.compute(
        *fused_randomized_svd(lazy, params, frames_per_task=40, groups_per_chain=per_chain),
        scheduler="threads",
    )
    again = dask.compute(
        *fused_randomized_svd(lazy, params, frames_per_task=40, groups_per_chain=per_chain),
        scheduler="threads",
    )
    for a, b, c in zip(unchained, chained, again, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(c, b)


def test_fused_reads_the_video_power_iters_plus_two_times(frames: np.ndarray) -> None:
    reads = []

    def counted(block: np.ndarray) -> np.ndarray:
        reads.append(len(block))
        return block

    lazy = da.from_array(frames, chunks=(60, H, W)).map_blocks(counted, dtype=np.uint8)
    params = SvdParameters(rank=RANK, iteration="fused", power_iters=3)
    dask.compute(*fused_randomized_svd(lazy, params), scheduler="sync")
    assert sum(reads) == T * params.passes == T * 5
    assert SvdParameters(rank=RANK, iteration="qr", power_iters=3).passes == 8


def test_colour_frames_are_columns_of_three_values_per_pixel(frames: np.ndarray) -> None:
    colour = np.stack([frames, 255 - frames, frames // 2], axis=-1)
    matrix = colour.reshape(T, -1).T.astype(np.float64)
    _, optimal = _optimal(matrix)
    lazy = da.from_array(colour, chunks=(60, H, W, 3))
    u, s, vt = dask.compute(*fused_randomized_svd(lazy, SvdParameters(rank=RANK, iteration="fused")))
    assert u.shape == (H * W * 3, RANK)
    assert _error(matrix, u, s, vt) <= optimal * 1.01


def test_a_black_video_gives_zeros_not_nan() -> None:
    lazy = da.zeros((40, 8, 10), dtype=np.uint8, chunks=(10, 8, 10))
    u, s, vt = dask.compute(*fused_randomized_svd(lazy, SvdParameters(rank=2, iteration="fused")))
    assert np.all(np.isfinite(u)) and np.all(np.isfinite(vt))
    np.testing.assert_array_equal(s, 0)


def test_the_last_pass_projects_each_group_once(frames: np.ndarray) -> None:
    """U, s and Vt share one projection task per group of chunks, persisted together."""
    lazy = da.from_array(frames, chunks=(20, H, W))  # 12 chunks, 6 groups of 2
    factors = fused_randomized_svd(lazy, SvdParameters(rank=RANK, iteration="fused"), frames_per_task=40)
    ran: list[str] = []
    with Callback(pretask=lambda key, *_: ran.append(str(key))):
        dask.compute(*factors, scheduler="sync")
    projections = [key for key in ran if "project_group" in key]
    assert len(projections) == 6


@pytest.mark.parametrize("chunk", [40, 300])
def test_a_bright_still_scene_keeps_both_bases_orthonormal(chunk: int) -> None:
    """s_1 / s_4 near 500 (a bright still background, faint changes): U and Vt stay orthonormal."""
    rng = np.random.default_rng(0)
    n_frames, height, width = 300, 60, 80
    changes = rng.standard_normal((3, n_frames)).T * [3.0, 1.5, 0.7] @ rng.uniform(-1, 1, (3, height * width))
    noisy = 200 + changes + rng.normal(0, 0.3, changes.shape)
    video = np.clip(np.rint(noisy), 0, 255).astype(np.uint8).reshape(n_frames, height, width)
    s_ref = np.linalg.svd(video.reshape(n_frames, -1).T.astype(np.float64), compute_uv=False)
    assert s_ref[0] / s_ref[3] > 400
    lazy = da.from_array(video, chunks=(chunk, height, width))
    u, s, vt = dask.compute(*fused_randomized_svd(lazy, SvdParameters(rank=4, iteration="fused")))
    np.testing.assert_allclose(s, s_ref[:4], rtol=1e-3)
    np.testing.assert_allclose(u.T @ u, np.eye(4), atol=1e-6)
    np.testing.assert_allclose(vt @ vt.T, np.eye(4), atol=1e-6)


def test_signs_follow_svd_flip_and_missing_directions_are_zeros_not_nan() -> None:
    """Three independent frames asked for rank 5: two zero singular values, finite factors."""
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (3, 12, 16), dtype=np.uint8)
    video = images[rng.integers(0, 3, 90)]
    matrix = video.reshape(90, -1).T.astype(np.float64)
    lazy = da.from_array(video, chunks=(25, 12, 16))
    u, s, vt = dask.compute(*fused_randomized_svd(lazy, SvdParameters(rank=5, iteration="fused")))
    assert np.all(np.isfinite(u)) and np.all(np.isfinite(vt))
    np.testing.assert_allclose(s[:3], np.linalg.svd(matrix, compute_uv=False)[:3], rtol=1e-5)
    assert s[3] == s[4] == 0
    np.testing.assert_array_equal(vt[3:], 0)
    np.testing.assert_array_equal(u[:, 3:], 0)
    np.testing.assert_allclose((u[:, :3] * s[:3]) @ vt[:3], matrix, atol=0.05)
    # dask's svd_flip convention: every row of Vt sums to 0 or more
    assert np.all(vt[:3].sum(axis=1) >= 0)


def test_svqb_drops_directions_that_are_not_there() -> None:
    rng = np.random.default_rng(0)
    y = rng.standard_normal((500, 6))
    y[:, 5] = y[:, 4]  # rank 5
    transform = svqb_transform(y.T @ y)
    q = y @ transform
    gram = q.T @ q
    np.testing.assert_allclose(gram[:5, :5], np.eye(5), atol=1e-10)
    np.testing.assert_allclose(q[:, 5], 0, atol=1e-6)


def test_bad_frames_are_refused() -> None:
    with pytest.raises(InvalidParameterError, match="uint8"):
        fused_randomized_svd(da.zeros((10, 4, 4), dtype=np.int16), SvdParameters(rank=1, iteration="fused"))
    with pytest.raises(InvalidParameterError, match="iteration"):
        SvdParameters(rank=1, iteration="power").validate(16, 10)  # type: ignore[arg-type]
