"""The exact SVD from the frames' Gram matrix, against numpy in float64."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from pipelines.decompose import SvdParameters
from pipelines.gram_svd import GRAM_MAX_FRAMES, choose_method, gram_exact_svd, gram_fits, gram_frames_per_task
from storage.errors import InvalidParameterError

T, HEIGHT, WIDTH = 90, 37, 53  # P = 1,961 values, not a multiple of the tiles
RANK = 6


def _frames(seed: int = 0) -> np.ndarray:
    """A background under a varying light, two moving squares and noise: uint8 (T, y, x)."""
    rng = np.random.default_rng(seed)
    background = rng.uniform(40, 200, (HEIGHT, WIDTH))
    light = 1 + 0.2 * np.sin(np.arange(T) / 7)
    frames = background[None] * light[:, None, None] + rng.normal(0, 4, (T, HEIGHT, WIDTH))
    for t in range(T):
        frames[t, 5:12, t % 40 : t % 40 + 7] = 250
        frames[t, 20:30, 45 - t % 40 : 52 - t % 40] = 5
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def _factors(
    frames: np.ndarray,
    *,
    chunk: int,
    frames_per_task: int | None,
    rank: int = RANK,
    keep_in_memory: bool = True,
) -> list[np.ndarray]:
    lazy, _ = gram_exact_svd(
        da.from_array(frames, chunks=(chunk, *frames.shape[1:])),
        SvdParameters(method="exact", rank=rank),
        frames_per_task=frames_per_task,
        keep_in_memory=keep_in_memory,
    )
    return [np.asarray(a) for a in dask.compute(*lazy)]


@pytest.mark.parametrize(("chunk", "frames_per_task"), [(20, None), (20, 40), (90, None), (7, 30)])
def test_factors_match_numpy_in_float64(chunk: int, frames_per_task: int | None) -> None:
    frames = _frames()
    u, s, vt = _factors(frames, chunk=chunk, frames_per_task=frames_per_task)
    assert (u.shape, s.shape, vt.shape) == ((HEIGHT * WIDTH, RANK), (RANK,), (RANK, T))
    assert (u.dtype, s.dtype, vt.dtype) == (np.float32,) * 3
    matrix = frames.reshape(T, -1).T.astype(np.float64)
    u_ref, s_ref, vt_ref = np.linalg.svd(matrix, full_matrices=False)
    np.testing.assert_allclose(s, s_ref[:RANK], rtol=2e-7)  # float32's rounding of exact values
    signs = np.sign(np.sum(vt * vt_ref[:RANK], axis=1))
    np.testing.assert_allclose(vt * signs[:, None], vt_ref[:RANK], atol=1e-6)
    np.testing.assert_allclose(u * signs, u_ref[:, :RANK], atol=1e-6)
    np.testing.assert_allclose(u.T.astype(np.float64) @ u, np.eye(RANK), atol=1e-6)
    assert np.all(vt.sum(axis=1) >= 0)  # svd_flip's signs: each row of Vt sums to 0 or more


def test_the_energies_give_the_optimal_errors_without_a_pass() -> None:
    frames = _frames(seed=4)
    _, energies = gram_exact_svd(
        da.from_array(frames, chunks=(20, HEIGHT, WIDTH)),
        SvdParameters(method="exact", rank=RANK),
        frames_per_task=40,
    )
    values = np.asarray(energies.compute())
    matrix = frames.reshape(T, -1).T.astype(np.float64)
    assert values[0] == float(np.sum(matrix**2))  # ||M||_F^2, an integer, exactly
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    for r in range(1, RANK + 1):
        optimal = np.linalg.norm(matrix - (u[:, :r] * s[:r]) @ vt[:r]) ** 2
        np.testing.assert_allclose(values[0] - np.sum(values[1 : r + 1]), optimal, rtol=1e-9)


def test_the_gram_matrix_is_exact_whatever_the_grouping() -> None:
    # float32 sums in another order would change the last bits of s and Vt
    frames = _frames(seed=1)
    one_group = _factors(frames, chunk=90, frames_per_task=None)
    for chunk, per_task in [(20, None), (7, 30), (13, 60)]:
        _, s, vt = _factors(frames, chunk=chunk, frames_per_task=per_task)
        np.testing.assert_array_equal(s, one_group[1])
        np.testing.assert_array_equal(vt, one_group[2])


def test_frames_read_anew_for_each_pair_give_the_same_factors() -> None:
    frames = _frames(seed=3)
    held = _factors(frames, chunk=20, frames_per_task=30)
    read_anew = _factors(frames, chunk=20, frames_per_task=30, keep_in_memory=False)
    np.testing.assert_array_equal(read_anew[1], held[1])
    np.testing.assert_array_equal(read_anew[2], held[2])
    np.testing.assert_allclose(read_anew[0], held[0], rtol=0, atol=1e-7)


def test_a_white_video_has_one_exact_component_and_zeros() -> None:
    frames = np.full((12, 64, 80), 255, dtype=np.uint8)  # G = 255^2 P everywhere: 2^24 per tile product
    u, s, vt = _factors(frames, chunk=5, frames_per_task=None, rank=3)
    assert s[0] == np.float32(255 * np.sqrt(64 * 80 * 12))
    assert np.all(s[1:] == 0) and np.all(u[:, 1:] == 0) and np.all(vt[1:] == 0)
    np.testing.assert_allclose(u[:, 0], 1 / np.sqrt(64 * 80), rtol=1e-6)


def test_black_and_white_pixels_whose_products_come_near_two_to_the_24_are_exact() -> None:
    # each product of 255s over EXACT_PIXELS pixels sums to nearly 2^24: a product over
    # more pixels would round, and the trace of G would not be the integer it is
    rng = np.random.default_rng(7)
    extremes = np.where(rng.random((16, 48, 96)) < 0.5, 0, 255).astype(np.uint8)  # 4,608 pixels
    _, energies = gram_exact_svd(
        da.from_array(extremes, chunks=(5, 48, 96)), SvdParameters(method="exact", rank=3), frames_per_task=8
    )
    matrix = extremes.reshape(16, -1).T.astype(np.int64)
    values = np.asarray(energies.compute())
    assert values[0] == float(np.sum(matrix * matrix))  # the trace of G, an integer, exactly
    reference = np.linalg.svd(matrix.astype(np.float64), compute_uv=False)[:3]
    np.testing.assert_allclose(np.sqrt(values[1:]), reference, rtol=1e-12)


def test_colour_frames_are_columns_of_all_their_values() -> None:
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (30, 9, 11, 3), dtype=np.uint8)
    u, s, _ = _factors(frames, chunk=8, frames_per_task=None, rank=4)
    reference = np.linalg.svd(frames.reshape(30, -1).T.astype(np.float64), compute_uv=False)[:4]
    assert u.shape == (9 * 11 * 3, 4)
    np.testing.assert_allclose(s, reference, rtol=2e-7)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((10, 8, 8), np.float32), "uint8"),
        (np.zeros((20, 4, 4), np.uint8), "at most"),  # more frames than pixels
    ],
)
def test_what_it_cannot_take_is_refused(frames: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        gram_exact_svd(
            da.from_array(frames, chunks=(5, 4, 4)[: frames.ndim]), SvdParameters(method="exact", rank=2)
        )


def test_gram_fits_uint8_videos_of_few_frames() -> None:
    assert gram_fits(n_pixels=921_600, n_frames=341, dtype=np.uint8)
    assert not gram_fits(n_pixels=921_600, n_frames=341, dtype=np.float32)
    assert not gram_fits(n_pixels=921_600, n_frames=GRAM_MAX_FRAMES + 1, dtype=np.uint8)
    assert not gram_fits(n_pixels=100, n_frames=101, dtype=np.uint8)


@pytest.mark.parametrize(
    ("frames", "rank", "extra", "expected"),
    [
        (341, 10, {}, "exact"),  # 341 <= 3 x 50 x 3
        (450, 10, {}, "exact"),
        (451, 10, {}, "randomized"),
        (794, 10, {}, "randomized"),  # Video_003 at 320x240
        (341, 10, {"seed": 1}, "randomized"),  # an option of the randomized method asks for it
        (341, 10, {"iteration": "fused"}, "randomized"),
        (341, 10, {"method": "exact"}, "exact"),
        (200, 10, {"method": "randomized"}, "randomized"),
    ],
)
def test_auto_takes_the_gram_where_it_costs_fewer_flops(
    frames: int, rank: int, extra: dict[str, object], expected: str
) -> None:
    params = SvdParameters(rank=rank, **extra)  # type: ignore[arg-type]
    chosen = choose_method(params, n_pixels=921_600, n_frames=frames, dtype=np.uint8)
    assert chosen.method == expected
    assert chosen.rank == rank


def test_auto_is_randomized_for_what_the_gram_does_not_take() -> None:
    params = SvdParameters(rank=3)
    assert choose_method(params, n_pixels=921_600, n_frames=100, dtype=np.float32).method == "randomized"
    assert choose_method(params, n_pixels=90, n_frames=100, dtype=np.uint8).method == "randomized"


@pytest.mark.parametrize(
    ("threads", "chunk", "limit", "expected"),
    [(1, 36, None, 171), (2, 36, None, 114), (8, 36, None, 57), (2, 200, None, 200), (2, 1, None, 114),
     (2, 10, 50, 50), (2, 60, 50, 60)],
)  # fmt: skip
def test_groups_give_each_thread_two_pairs(
    threads: int, chunk: int, limit: int | None, expected: int
) -> None:
    # 341 frames: 1 thread -> 2 groups (3 pairs), 2 -> 3 (6 pairs), 8 -> 6 (21 pairs); a
    # memory limit makes the groups smaller, but never smaller than a chunk
    per_task = gram_frames_per_task(
        n_frames=341, video_chunk_frames=chunk, threads=threads, max_group_frames=limit
    )
    assert per_task == expected
