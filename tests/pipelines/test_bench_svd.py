"""The SVD benchmark: numpy against dask's randomized and exact SVDs, estimates, the table."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import psutil
import pytest

import pipelines.bench.svd as bench_svd
from pipelines.bench.svd import (
    NOTEBOOK_SIZES,
    SvdTiming,
    estimate_seconds,
    format_table,
    low_rank_matrix,
    svd_cost,
    time_svds,
)
from storage.errors import InvalidParameterError

TINY = [(300, 200), (100, 100)]


@pytest.fixture(scope="module")
def measured() -> list[SvdTiming]:
    return time_svds(TINY, repeats=1)


def _data_lines(table: str) -> list[str]:
    return table.splitlines()[1:]


def test_notebook_sizes_are_the_nine_combinations() -> None:
    assert sorted(NOTEBOOK_SIZES) == sorted((r, c) for r in (100, 1000, 10000) for c in (100, 1000, 10000))
    assert len(set(NOTEBOOK_SIZES)) == 9


def test_every_size_is_timed_in_the_given_order(measured: list[SvdTiming]) -> None:
    assert [(t.rows, t.cols) for t in measured] == TINY
    for timing in measured:
        assert not timing.numpy_estimated and not timing.exact_estimated
        assert timing.numpy_s is not None and timing.numpy_s > 0
        assert timing.exact_s is not None and timing.exact_s > 0
        assert timing.randomized_s > 0
        assert timing.randomized_ratio == pytest.approx(timing.numpy_s / timing.randomized_s)
        assert timing.exact_ratio == pytest.approx(timing.numpy_s / timing.exact_s)


def test_singular_values_of_a_low_rank_matrix_match_numpy(measured: list[SvdTiming]) -> None:
    for timing in measured:
        assert timing.randomized_error is not None and timing.randomized_error < 1e-4
        assert timing.exact_error is not None and timing.exact_error < 1e-4


def test_table_has_a_row_per_size(measured: list[SvdTiming]) -> None:
    table = format_table(measured)
    lines = _data_lines(table)
    assert len(lines) == len(TINY)
    assert "numpy s" in table.splitlines()[0]
    for line, (rows, cols) in zip(lines, TINY, strict=True):
        assert line.split()[:2] == [str(rows), str(cols)]
        assert line.count("x") == 2
    assert "(est.)" not in table


def test_ratios_and_missing_values_are_formatted() -> None:
    rows = [
        SvdTiming(rows=10, cols=20, numpy_s=2.0, randomized_s=1.0, exact_s=4.0, randomized_error=1.5e-6),
        SvdTiming(rows=30, cols=40, numpy_s=1500.0, randomized_s=1.0, exact_s=None),
        SvdTiming(rows=50, cols=60, numpy_s=None, randomized_s=0.5, exact_s=0.25),
    ]
    first, second, third = _data_lines(format_table(rows))
    assert first.split() == ["10", "20", "2.00", "1.00", "2.00x", "4.00", "0.500x", "1.5e-06", "-"]
    assert second.split() == ["30", "40", "1500", "1.00", "1500x", "-", "-", "-", "-"]
    assert third.split() == ["50", "60", "-", "0.5000", "-", "0.2500", "-", "-", "-"]


def test_a_size_over_the_budget_is_estimated_not_run() -> None:
    small, large = time_svds([(100, 100), (300, 200)], repeats=1, max_numpy_seconds=1e-9)
    assert not small.numpy_estimated and small.numpy_s is not None
    assert large.numpy_estimated
    expected = small.numpy_s * svd_cost(300, 200) / svd_cost(100, 100)
    assert large.numpy_s == pytest.approx(expected)
    assert large.randomized_error is None and large.exact_error is None
    assert not large.exact_estimated and large.exact_s is not None
    small_line, large_line = _data_lines(format_table([small, large]))
    assert "(est.)" not in small_line
    assert large_line.count("(est.)") == 3  # numpy time and both ratios


def test_the_exact_method_has_its_own_budget() -> None:
    small, large = time_svds([(100, 100), (300, 200)], repeats=1, max_exact_seconds=1e-9)
    assert not small.exact_estimated and not large.numpy_estimated
    assert large.exact_estimated and small.exact_s is not None
    assert large.exact_s == pytest.approx(small.exact_s * svd_cost(300, 200) / svd_cost(100, 100))
    assert large.exact_error is None and large.randomized_error is not None
    assert "(est.)" in _data_lines(format_table([large]))[0]


def test_numpy_can_be_left_out() -> None:
    (timing,) = time_svds([(100, 100)], repeats=1, max_numpy_seconds=0)
    assert timing.numpy_s is None and not timing.numpy_estimated
    assert timing.randomized_ratio is None and timing.randomized_error is None
    assert _data_lines(format_table([timing]))[0].split()[2] == "-"


def test_exact_is_skipped_when_it_would_not_fit_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=1))
    (timing,) = time_svds([(300, 200)], repeats=1)
    assert timing.exact_s is None and not timing.exact_estimated and timing.exact_error is None
    assert timing.numpy_s is not None and timing.randomized_s > 0


def test_estimate_uses_the_closest_shape() -> None:
    assert estimate_seconds(100, 100, {}) is None
    measured = {(100, 100): 1.0, (1000, 100): 50.0, (100, 1000): 70.0}
    assert estimate_seconds(1000, 1000, measured) == pytest.approx(1000.0)
    assert estimate_seconds(10000, 1000, measured) == pytest.approx(50.0 * 1000)
    # an m x n and an n x m are equally close to a square: their mean
    del measured[100, 100]
    assert estimate_seconds(1000, 1000, measured) == pytest.approx(6000.0)
    # the dearest of the same shape is preferred
    assert estimate_seconds(400, 400, {(10, 10): 1.0, (200, 200): 8.0}) == pytest.approx(64.0)


def test_estimate_ignores_runs_too_short_to_extrapolate() -> None:
    measured = {(100, 100): 0.01, (1000, 100): 0.5}
    assert estimate_seconds(1000, 1000, measured) == pytest.approx(50.0)
    assert estimate_seconds(1000, 1000, measured, min_reference_seconds=0.0) == pytest.approx(10.0)
    # nothing long enough: the short runs are all there is
    assert estimate_seconds(1000, 1000, {(100, 100): 0.01}) == pytest.approx(10.0)


def test_low_rank_matrix_has_a_clear_top_spectrum() -> None:
    matrix = low_rank_matrix(200, 120, rank=10, seed=3)
    assert matrix.dtype == np.float32 and matrix.shape == (200, 120)
    s = np.linalg.svd(matrix.astype(np.float64), compute_uv=False)
    assert s[9] > 5 * s[10]
    np.testing.assert_array_equal(matrix, low_rank_matrix(200, 120, rank=10, seed=3))


def test_repeats_must_be_positive() -> None:
    with pytest.raises(InvalidParameterError, match="repeats"):
        time_svds([(100, 100)], repeats=0)


def test_vidsvd_bench_svd_prints_the_table(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.cli import main

    monkeypatch.setattr(bench_svd, "NOTEBOOK_SIZES", ((100, 100),))
    assert main(["bench", "svd", "--repeats", "1", "--max-exact-seconds", "30"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[2].split()[:2] == ["100", "100"]
