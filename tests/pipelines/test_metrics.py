"""Size, reconstruction error and CDnet scores."""

# U, Vt, M: DESIGN.md's names
# ruff: noqa: N806

from __future__ import annotations

import math

import dask
import dask.array as da
import numpy as np
import pytest

from pipelines.matrix import video_columns, video_matrix
from pipelines.metrics import (
    compression_fraction,
    cumulative_energy,
    factor_bytes,
    mean_squared_errors,
    psnr,
    rank_table,
    relative_errors,
    squared_residuals,
)
from pipelines.scores import Scores, cdnet_scores
from storage.errors import InvalidParameterError
from tests.helpers import raise_if_dask_computes


def small_problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A (P=60, T=40) matrix of video-like values and its float32 SVD."""
    rng = np.random.default_rng(seed)
    background = rng.uniform(40, 200, size=60)
    M = (background[:, None] * rng.uniform(0.9, 1.1, size=40) + rng.normal(0, 8, size=(60, 40))).astype(
        np.float32
    )
    U, s, Vt = np.linalg.svd(M.astype(np.float64), full_matrices=False)
    return M, U.astype(np.float32), s.astype(np.float32), Vt.astype(np.float32)


# --- size --------------------------------------------------------------------------------


def test_compression_fraction_reproduces_the_notebook() -> None:
    # the notebook's clip: 160x120 pixels, 6000 frames, 700 components -> 15.3 %
    assert compression_fraction(700, 160 * 120, 6000) == pytest.approx(0.1531, abs=5e-5)
    k, P, T = 3, 12, 5
    assert compression_fraction(k, P, T) == k * (P + 1 + T) / (P * T)
    assert factor_bytes(k, P, T) == k * (P + 1 + T) * 4
    assert factor_bytes(k, P, T, itemsize=8) == k * (P + 1 + T) * 8


@pytest.mark.parametrize("args", [(0, 10, 10), (1, 0, 10), (1, 10, -1), (1.5, 10, 10), (True, 10, 10)])
def test_sizes_refuse_non_positive_integers(args: tuple[int, int, int]) -> None:
    with pytest.raises(InvalidParameterError, match="positive integer"):
        compression_fraction(*args)
    with pytest.raises(InvalidParameterError, match="positive integer"):
        factor_bytes(*args)


def test_rank_table_rows() -> None:
    rows = rank_table(
        [1, 2],
        n_pixels=100,
        n_frames=50,
        relative_errors=[0.1, 0.05],
        mean_squared_errors=[4.0, 0.0],
        stored_video_bytes=1000,
    )
    assert [row["rank"] for row in rows] == [1, 2]
    assert rows[0]["compression_fraction"] == pytest.approx(151 / 5000)
    assert rows[1]["factor_bytes"] == 2 * 151 * 4
    assert rows[1]["bytes_vs_raw"] == pytest.approx(2 * 151 * 4 / 5000)
    assert rows[1]["bytes_vs_stored"] == pytest.approx(2 * 151 * 4 / 1000)
    assert rows[0]["psnr_db"] == pytest.approx(10 * math.log10(255**2 / 4))
    assert rows[1]["psnr_db"] == math.inf
    without = rank_table([1], n_pixels=100, n_frames=50, relative_errors=[0.1], mean_squared_errors=[1.0])
    assert without[0]["bytes_vs_stored"] is None
    with pytest.raises(InvalidParameterError, match="per rank"):
        rank_table([1, 2], n_pixels=100, n_frames=50, relative_errors=[0.1], mean_squared_errors=[1.0])


# --- reconstruction error ----------------------------------------------------------------


@pytest.mark.parametrize("order", ["C", "F"])  # video_matrix's chunks are Fortran-ordered
@pytest.mark.parametrize("chunks", [(60, 40), (60, 7), (16, 40), (25, 15)])
def test_relative_errors_equal_numpys_direct_computation(chunks: tuple[int, int], order: str) -> None:
    M, U, s, Vt = small_problem()
    ordered = np.asfortranarray if order == "F" else np.ascontiguousarray
    ranks = [5, 1, 3, 5, 40]
    with raise_if_dask_computes():
        errors = relative_errors(
            da.from_array(M, chunks=chunks).map_blocks(ordered), U, s, da.from_array(Vt, chunks=(7, 9)), ranks
        )
    assert errors.shape == (len(ranks),)
    M64 = M.astype(np.float64)
    expected = [
        np.linalg.norm(M64 - (U[:, :k].astype(np.float64) * s[:k]) @ Vt[:k].astype(np.float64))
        / np.linalg.norm(M64)
        for k in ranks
    ]
    np.testing.assert_allclose(errors.compute(), expected, rtol=1e-9, atol=1e-12)
    assert errors.compute()[-1] < 1e-5  # full rank: only float32 rounding of the factors


@pytest.mark.parametrize("order", ["C", "F"])
def test_squared_residuals_need_no_orthonormal_factors(order: str) -> None:
    """Factors that are not an SVD (a perturbed, unnormalised U; any Vt): still exact."""
    M, U, s, Vt = small_problem(2)
    rng = np.random.default_rng(9)
    U_off = (U * 1.7 + rng.normal(0, 0.05, U.shape)).astype(np.float32)
    Vt_off = (Vt + rng.normal(0, 0.1, Vt.shape)).astype(np.float32)
    ordered = np.asfortranarray if order == "F" else np.ascontiguousarray
    ranks = [1, 2, 7, 20]
    sums = squared_residuals(da.from_array(M, chunks=(25, 15)).map_blocks(ordered), U_off, s, Vt_off, ranks)
    M64 = M.astype(np.float64)
    expected = [
        np.sum((M64 - (U_off[:, :k].astype(np.float64) * s[:k]) @ Vt_off[:k].astype(np.float64)) ** 2)
        for k in ranks
    ]
    np.testing.assert_allclose(sums.compute(), [*expected, np.sum(M64**2)], rtol=1e-10)


def test_squared_residuals_of_uint8_columns_equal_those_of_float_m() -> None:
    """The report's pass converts the stored bytes a tile at a time: the same sums as float32 M."""
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 256, size=(24, 9, 11), dtype=np.uint8)
    frames[:, 2:5] = 200  # a strong first component
    matrix = frames.reshape(24, -1).T.astype(np.float64)
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    u, s, vt = u[:, :6].astype(np.float32), s[:6].astype(np.float32), vt[:6].astype(np.float32)
    lazy = da.from_array(frames, chunks=(7, -1, -1))
    ranks = [1, 3, 6]
    from_bytes = squared_residuals(video_columns(lazy), u, s, vt, ranks).compute()
    from_floats = squared_residuals(video_matrix(lazy), u, s, vt, ranks).compute()
    np.testing.assert_array_equal(from_bytes, from_floats)
    expected = [np.sum((matrix - (u[:, :k] * s[:k]).astype(np.float64) @ vt[:k]) ** 2) for k in ranks]
    np.testing.assert_allclose(from_bytes, [*expected, np.sum(matrix**2)], rtol=1e-9)


def test_squared_residuals_and_mse_share_one_pass() -> None:
    M, U, s, Vt = small_problem(1)
    dM = da.from_array(M, chunks=(30, 10))
    sums = squared_residuals(dM, U, s, Vt, [2]).compute()
    M64 = M.astype(np.float64)
    residual = M64 - (U[:, :2].astype(np.float64) * s[:2]) @ Vt[:2].astype(np.float64)
    np.testing.assert_allclose(sums, [np.sum(residual**2), np.sum(M64**2)], rtol=1e-10)
    errors, mse = dask.compute(relative_errors(dM, U, s, Vt, [2]), mean_squared_errors(dM, U, s, Vt, [2]))
    np.testing.assert_allclose(mse, [np.mean(residual**2)], rtol=1e-10)
    np.testing.assert_allclose(errors, [math.sqrt(sums[0] / sums[1])], rtol=1e-10)


def test_relative_error_of_a_zero_matrix_is_zero_when_exact_and_nan_otherwise() -> None:
    M = da.zeros((6, 4), dtype=np.float32)
    U, s, Vt = np.eye(6, 2), np.ones(2), np.zeros((2, 4))
    assert relative_errors(M, U, s, Vt, [1]).compute().tolist() == [0.0]  # a black video, exactly
    assert np.isnan(relative_errors(M, U, s, np.ones((2, 4)), [1]).compute()).all()


@pytest.mark.parametrize("ranks", [[], [0], [41], [1.5]])
def test_relative_errors_refuse_bad_ranks(ranks: list[int]) -> None:
    M, U, s, Vt = small_problem()
    with pytest.raises(InvalidParameterError, match="ranks"):
        relative_errors(da.from_array(M), U, s, Vt, ranks)


def test_relative_errors_refuse_factors_of_another_matrix() -> None:
    M, U, s, Vt = small_problem()
    with pytest.raises(InvalidParameterError, match="fit together"):
        relative_errors(da.from_array(M[:, :30]), U, s, Vt, [1])


def test_psnr() -> None:
    assert psnr(255.0**2) == pytest.approx(0.0)
    np.testing.assert_allclose(psnr(np.array([1.0, 0.0])), [20 * math.log10(255), math.inf])
    assert psnr(1.0, peak=1.0) == pytest.approx(0.0)
    lazy = psnr(da.from_array(np.array([1.0, 100.0])))
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), [48.1308036, 28.1308036])


def test_cumulative_energy() -> None:
    s = np.array([3.0, 2.0, 1.0])
    np.testing.assert_allclose(cumulative_energy(s), [9 / 14, 13 / 14, 1.0])
    np.testing.assert_allclose(cumulative_energy(s, total=28.0), [9 / 28, 13 / 28, 0.5])
    np.testing.assert_array_equal(cumulative_energy(np.zeros(2)), [0.0, 0.0])
    with pytest.raises(InvalidParameterError, match="smaller"):
        cumulative_energy(s, total=10.0)
    with pytest.raises(InvalidParameterError, match="compute"):
        cumulative_energy(da.from_array(s))


# --- CDnet scores --------------------------------------------------------------------------


def test_cdnet_rules_on_a_hand_made_example() -> None:
    truth = np.array(
        [
            [0, 0, 50, 50, 85],
            [255, 255, 255, 170, 85],
        ],
        dtype=np.uint8,
    )
    predicted = np.array(
        [
            [True, False, True, False, True],  # FP, TN, FP (shadow is background), TN, ignored
            [True, True, False, True, False],  # TP, TP, FN, ignored, ignored
        ]
    )
    scores = cdnet_scores(predicted, truth)
    assert scores == Scores(tp=2, fp=2, fn=1, tn=2)
    assert scores.recall == pytest.approx(2 / 3)
    assert scores.specificity == pytest.approx(2 / 4)
    assert scores.fpr == pytest.approx(2 / 4)
    assert scores.fnr == pytest.approx(1 / 3)
    assert scores.pwc == pytest.approx(100 * 3 / 7)
    assert scores.precision == pytest.approx(2 / 4)
    p, r = 2 / 4, 2 / 3
    assert scores.f_measure == pytest.approx(2 * p * r / (p + r))
    # a 0/255 uint8 prediction counts the same
    assert cdnet_scores(predicted.astype(np.uint8) * 255, truth) == scores


def test_scores_accumulate_across_frames() -> None:
    truth = np.zeros((3, 4, 4), dtype=np.uint8)
    truth[:, 1:3, 1:3] = 255
    predicted = truth == 255
    predicted[0, 0, 0] = True
    per_frame = [cdnet_scores(p, t) for p, t in zip(predicted, truth, strict=True)]
    total = sum(per_frame, Scores())
    assert total == cdnet_scores(predicted, truth) == Scores(tp=12, fp=1, fn=0, tn=35)
    assert total.total == 48


def test_scores_without_foreground_or_predictions_give_nan_not_zero() -> None:
    empty = cdnet_scores(np.zeros((2, 2), bool), np.zeros((2, 2), np.uint8))
    assert empty == Scores(tn=4)
    assert math.isnan(empty.recall)
    assert math.isnan(empty.precision)
    assert math.isnan(empty.f_measure)
    assert empty.specificity == 1.0
    assert empty.pwc == 0.0
    missed = Scores(fn=3, tn=1)
    assert missed.f_measure == 0.0
    assert math.isnan(missed.precision)
    as_json = missed.as_dict()
    assert as_json["precision"] is None
    assert as_json["f_measure"] == 0.0
    assert as_json["fn"] == 3
    unscored = cdnet_scores(np.ones((2, 2), bool), np.full((2, 2), 85, np.uint8))
    assert unscored.total == 0
    assert math.isnan(unscored.pwc)


def test_cdnet_scores_refuse_other_values_and_shapes() -> None:
    with pytest.raises(InvalidParameterError, match="not a CDnet value"):
        cdnet_scores(np.zeros((2, 2), bool), np.array([[0, 128], [255, 0]], np.uint8))
    with pytest.raises(InvalidParameterError, match="same shape"):
        cdnet_scores(np.zeros((2, 3), bool), np.zeros((3, 2), np.uint8))
