"""Randomized and exact truncated SVD of M, lazily, against numpy."""

from __future__ import annotations

import threading
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

from pipelines.decompose import (
    DEFAULT_OVERSAMPLE,
    DEFAULT_POWER_ITERS,
    Decomposition,
    SvdParameters,
    auto_iteration,
    decompose,
    default_block_rows,
    estimate_exact_memory,
    exact_svd,
    randomized_svd,
    singular_value_accuracy,
)
from pipelines.metrics import relative_errors
from storage.errors import InvalidParameterError
from tests.helpers import raise_if_dask_computes

RANK = 5


@pytest.fixture(scope="module")
def low_rank() -> np.ndarray:
    """3000 x 200 float32: rank 5 with well separated singular values, plus noise."""
    rng = np.random.default_rng(42)
    left, _ = np.linalg.qr(rng.standard_normal((3000, RANK)))
    right, _ = np.linalg.qr(rng.standard_normal((200, RANK)))
    signal = (left * [900.0, 600.0, 400.0, 250.0, 150.0]) @ right.T
    noise = rng.standard_normal((3000, 200))
    return (signal + noise).astype(np.float32)


@pytest.fixture(scope="module")
def reference(low_rank: np.ndarray) -> tuple[np.ndarray, float]:
    """numpy's singular values (float64) and the optimal rank-5 relative error."""
    s = np.linalg.svd(low_rank.astype(np.float64), compute_uv=False)
    optimal = float(np.sqrt((s[RANK:] ** 2).sum() / (s**2).sum()))
    return s, optimal


def _frame_chunked(matrix: np.ndarray, frames: int = 60) -> da.Array:
    """M as video_matrix gives it: every pixel, some frames per chunk."""
    return da.from_array(matrix, chunks=(matrix.shape[0], frames))


def _error(matrix: np.ndarray, u: np.ndarray, s: np.ndarray, vt: np.ndarray) -> float:
    m = matrix.astype(np.float64)
    residual = m - (u.astype(np.float64) * s) @ vt.astype(np.float64)
    return float(np.linalg.norm(residual) / np.linalg.norm(m))


def _check_against_numpy(
    low_rank: np.ndarray, reference: tuple[np.ndarray, float], factors: Decomposition, *, rtol: float
) -> None:
    u, s, vt = dask.compute(*factors)
    s_ref, optimal = reference
    assert u.shape == (3000, RANK) and s.shape == (RANK,) and vt.shape == (RANK, 200)
    assert u.dtype == s.dtype == vt.dtype == np.float32
    np.testing.assert_allclose(s, s_ref[:RANK], rtol=rtol)
    assert _error(low_rank, u, s, vt) <= optimal * (1 + rtol)
    np.testing.assert_allclose(u.T @ u, np.eye(RANK), atol=1e-4)
    np.testing.assert_allclose(vt @ vt.T, np.eye(RANK), atol=1e-4)


# laziness ------------------------------------------------------------------------------


def relative_error(matrix, u, s, vt):  # type: ignore[no-untyped-def]
    """The rank-k relative error of the metrics module, k the number of given components."""
    return relative_errors(matrix, u, s, vt, [int(np.shape(s)[0])])[0]


def test_every_function_stays_lazy(low_rank: np.ndarray) -> None:
    m = _frame_chunked(low_rank)
    with raise_if_dask_computes():
        results = [
            randomized_svd(m, SvdParameters(rank=RANK)),
            randomized_svd(m, SvdParameters(rank=RANK), keep_in_memory=True),
            exact_svd(m, SvdParameters(method="exact", rank=RANK), memory_limit_bytes=2**40),
            decompose(m, SvdParameters(rank=RANK, iteration="qr")),
            decompose(m.T, SvdParameters(method="exact", rank=RANK)),
        ]
        for u, s, vt in results:
            assert all(isinstance(a, da.Array) for a in (u, s, vt))
            error = relative_error(m if u.shape[0] == 3000 else m.T, u, s, vt)
            assert isinstance(error, da.Array)
        assert isinstance(singular_value_accuracy(results[0].s, np.ones(RANK)), da.Array)
        with pytest.raises(AssertionError, match="computed"):
            results[0].s.compute()  # the guard itself works


# randomized -----------------------------------------------------------------------------


def test_randomized_matches_numpy(low_rank: np.ndarray, reference: tuple[np.ndarray, float]) -> None:
    factors = randomized_svd(_frame_chunked(low_rank), SvdParameters(rank=RANK))
    assert factors.U.shape == (3000, RANK) and factors.Vt.shape == (RANK, 200)
    _check_against_numpy(low_rank, reference, factors, rtol=1e-3)


def test_randomized_on_pixel_chunks_matches_numpy(
    low_rank: np.ndarray, reference: tuple[np.ndarray, float]
) -> None:
    m = da.from_array(low_rank, chunks=(700, 200))
    _check_against_numpy(low_rank, reference, randomized_svd(m, SvdParameters(rank=RANK)), rtol=1e-3)


def test_randomized_is_deterministic_for_a_seed(low_rank: np.ndarray) -> None:
    m = _frame_chunked(low_rank)
    params = SvdParameters(rank=RANK, power_iters=0, seed=3)
    first = dask.compute(*randomized_svd(m, params))
    again = dask.compute(*randomized_svd(_frame_chunked(low_rank.copy()), params))
    other = dask.compute(*randomized_svd(m, SvdParameters(rank=RANK, power_iters=0, seed=4)))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_randomized_equals_svd_compressed_bit_for_bit(low_rank: np.ndarray) -> None:
    m = _frame_chunked(low_rank)
    params = SvdParameters(rank=RANK, power_iters=2, oversample=7, seed=1)
    ours = dask.compute(*randomized_svd(m, params))
    theirs = dask.compute(
        *da.linalg.svd_compressed(
            m, k=RANK, iterator="QR", n_power_iter=2, n_oversamples=7, seed=1, compute=False
        )
    )
    kept = dask.compute(*randomized_svd(m, params, keep_in_memory=True))
    for a, b, c in zip(ours, theirs, kept, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, c)


def _counting_matrix(matrix: np.ndarray, frames: int) -> tuple[da.Array, dict[int, int]]:
    """A frame-chunked M whose chunk loads are counted (one count per read of a chunk)."""
    reads: dict[int, int] = {}
    lock = threading.Lock()

    def load(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:  # type: ignore[type-arg]
        assert block_info is not None
        index = block_info[0]["chunk-location"][1]
        with lock:
            reads[index] = reads.get(index, 0) + 1
        return block.copy()

    source = da.from_array(matrix, chunks=(matrix.shape[0], frames))
    return source.map_blocks(load, dtype=matrix.dtype), reads


def test_randomized_reads_m_again_on_every_pass_instead_of_holding_it(low_rank: np.ndarray) -> None:
    params = SvdParameters(rank=RANK, power_iters=2)
    passes = 2 * params.power_iters + 2
    m, reads = _counting_matrix(low_rank, 50)
    dask.compute(*randomized_svd(m, params))
    assert reads == dict.fromkeys(range(4), passes)
    held, held_reads = _counting_matrix(low_rank, 50)
    dask.compute(*randomized_svd(held, params, keep_in_memory=True))
    assert held_reads == dict.fromkeys(range(4), 1)  # svd_compressed holds every chunk


def test_randomized_on_a_rechunked_video_matrix_reads_it_again_too() -> None:
    # dask's own clone() breaks on rechunk layers (dask/dask#12455): our copy must not.
    from pipelines.matrix import video_matrix

    rng = np.random.default_rng(3)
    frames = np.clip(rng.normal(120, 20, (60, 8, 10)), 0, 255).astype(np.uint8)
    reads: dict[int, int] = {}
    lock = threading.Lock()

    def load(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:  # type: ignore[type-arg]
        assert block_info is not None
        with lock:
            index = block_info[0]["chunk-location"][0]
            reads[index] = reads.get(index, 0) + 1
        return block

    source = da.from_array(frames, chunks=(25, 8, 10)).map_blocks(load, dtype=np.uint8)
    params = SvdParameters(rank=3, power_iters=1)
    for m in (
        video_matrix(source, frames_per_chunk=60, image_rows_per_chunk=3),
        video_matrix(source, frames_per_chunk=20),
    ):
        reads.clear()
        ours = dask.compute(*randomized_svd(m, params))
        assert reads == dict.fromkeys(range(3), 2 * params.power_iters + 2)
        held = dask.compute(*randomized_svd(m, params, keep_in_memory=True))
        for a, b in zip(ours, held, strict=True):
            np.testing.assert_array_equal(a, b)


def test_randomized_rank_up_to_min_side() -> None:
    rng = np.random.default_rng(0)
    small = rng.standard_normal((40, 12)).astype(np.float32)
    u, s, vt = dask.compute(*randomized_svd(da.from_array(small, chunks=(40, 5)), SvdParameters(rank=12)))
    np.testing.assert_allclose(s, np.linalg.svd(small, compute_uv=False), rtol=1e-4)
    np.testing.assert_allclose((u * s) @ vt, small, atol=1e-4)


def test_defaults_are_the_measured_ones() -> None:
    params = SvdParameters(rank=10)
    assert (params.method, params.power_iters, params.oversample, params.seed) == (
        "auto",
        DEFAULT_POWER_ITERS,
        DEFAULT_OVERSAMPLE,
        0,
    )
    assert params.as_attrs() == {
        "method": "auto",
        "rank": 10,
        "power_iters": DEFAULT_POWER_ITERS,
        "oversample": DEFAULT_OVERSAMPLE,
        "seed": 0,
        "iteration": "auto",
    }


# exact ----------------------------------------------------------------------------------


def test_exact_matches_numpy(low_rank: np.ndarray, reference: tuple[np.ndarray, float]) -> None:
    m = _frame_chunked(low_rank)  # frames split into chunks: rechunked for TSQR
    factors = exact_svd(m, SvdParameters(method="exact", rank=RANK), block_rows=700)
    assert factors.U.chunks[0] == (700, 700, 700, 700, 200)
    _check_against_numpy(low_rank, reference, factors, rtol=1e-5)


def test_exact_regroups_blocks_shorter_than_twice_the_short_side(low_rank: np.ndarray) -> None:
    m = da.from_array(low_rank, chunks=(100, 200))  # 30 blocks of 100 rows < 2 * 200
    factors = exact_svd(m, SvdParameters(method="exact", rank=RANK), block_rows=1500)
    assert factors.U.chunks[0] == (1500, 1500)
    with pytest.raises(InvalidParameterError, match="block_rows must be a positive integer, got 0"):
        exact_svd(m, SvdParameters(method="exact", rank=RANK), block_rows=0)


def test_exact_uses_a_tall_chunking_as_it_is(
    low_rank: np.ndarray, reference: tuple[np.ndarray, float]
) -> None:
    m = da.from_array(low_rank, chunks=(1000, 200))
    factors = exact_svd(m, SvdParameters(method="exact", rank=RANK), block_rows=123)
    assert factors.U.chunks[0] == (1000, 1000, 1000)
    _check_against_numpy(low_rank, reference, factors, rtol=1e-5)


@pytest.mark.parametrize("chunks", [(200, 600), (50, 3000), (200, 3000)])
def test_exact_short_and_wide_is_transposed(low_rank: np.ndarray, chunks: tuple[int, int]) -> None:
    wide = np.ascontiguousarray(low_rank.T)  # more frames than pixels
    u, s, vt = dask.compute(
        *exact_svd(da.from_array(wide, chunks=chunks), SvdParameters(method="exact", rank=RANK))
    )
    assert u.shape == (200, RANK) and vt.shape == (RANK, 3000)
    s_ref = np.linalg.svd(wide.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(s, s_ref[:RANK], rtol=1e-5)
    optimal = np.sqrt((s_ref[RANK:] ** 2).sum() / (s_ref**2).sum())
    assert _error(wide, u, s, vt) <= optimal * (1 + 1e-5)


def test_exact_refuses_beyond_the_memory_limit_naming_randomized(low_rank: np.ndarray) -> None:
    m = _frame_chunked(low_rank)
    params = SvdParameters(method="exact", rank=RANK)
    needed = estimate_exact_memory(3000, 200, block_rows=default_block_rows(3000, 200))
    with pytest.raises(InvalidParameterError, match="--method randomized") as caught:
        exact_svd(m, params, memory_limit_bytes=needed - 1)
    assert "3000 pixels x 200 frames" in str(caught.value)
    with pytest.raises(InvalidParameterError, match="--method randomized"):
        decompose(m, params, memory_limit_bytes=needed - 1)
    with pytest.raises(InvalidParameterError, match="--method randomized"):
        exact_svd(m, params, memory_limit_bytes=needed, threads=4)  # more blocks at once
    exact_svd(m, params, memory_limit_bytes=needed)  # fits: no error


def test_memory_estimate() -> None:
    # The notebook's video: 76800 x 794 in 4 blocks, one thread.
    rows = default_block_rows(76800, 794)
    assert rows == 21129
    estimate = estimate_exact_memory(76800, 794, block_rows=rows)
    n = 794
    held = 76800 * n + 2 * 4 * n * n
    assert estimate == 4 * (held + 8 * rows * n)
    assert 700 * 2**20 < estimate < 900 * 2**20  # measured peak RSS: 870 MiB
    # transposed shapes cost the same; more threads and longer videos cost more
    assert estimate_exact_memory(794, 76800, block_rows=rows) == estimate
    assert estimate_exact_memory(76800, 794, block_rows=rows, threads=2) > estimate
    assert estimate_exact_memory(76800, 2000, block_rows=rows) > estimate
    # blocks shorter than 2n: all stacked R factors are factored in one task
    short = estimate_exact_memory(76800, 3000, block_rows=5760)
    tall = estimate_exact_memory(76800, 3000, block_rows=6080)
    assert short > tall + 3 * 2**30


def test_default_block_rows() -> None:
    assert default_block_rows(76800, 3000) == 6000  # at least twice the short side
    assert default_block_rows(76800, 3000, multiple_of=320) == 6080
    assert default_block_rows(100, 10) == 100  # at most the long side
    assert default_block_rows(10, 5000) == 5000


# parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (SvdParameters(rank=900), r"--rank must be between 1 and min\(pixels, frames\) = 200, got 900"),
        (SvdParameters(rank=0), r"--rank must be between 1 and min\(pixels, frames\) = 200, got 0"),
        (SvdParameters(rank=5, power_iters=-1), "--power-iters must be 0 or more"),
        (SvdParameters(rank=5, oversample=-2), "--oversample must be 0 or more"),
        (SvdParameters(rank=5, seed=-1), "--seed must be 0 or more"),
        (
            SvdParameters(method="lanczos", rank=5),
            "--method must be auto, randomized or exact, got 'lanczos'",
        ),  # type: ignore[arg-type]
    ],
)
def test_parameter_validation(params: SvdParameters, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        params.validate(3000, 200)
    m = da.zeros((3000, 200), dtype=np.float32, chunks=(3000, 50))
    with pytest.raises(InvalidParameterError, match=message):
        decompose(m, params)
    with pytest.raises(InvalidParameterError, match=message):
        exact_svd(m, params) if params.method == "exact" else randomized_svd(m, params)


def test_parameters_are_frozen_and_keyword_only() -> None:
    params = SvdParameters(rank=3)
    with pytest.raises(AttributeError):
        params.rank = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        SvdParameters("exact", 3)  # type: ignore[misc]


def test_decomposition_needs_a_2d_dask_array() -> None:
    with pytest.raises(InvalidParameterError, match="2-d dask array"):
        decompose(np.zeros((4, 4), dtype=np.float32), SvdParameters(rank=1))  # type: ignore[arg-type]


def test_decompose_dispatches_on_the_method(low_rank: np.ndarray) -> None:
    m = _frame_chunked(low_rank)
    exact = SvdParameters(method="exact", rank=RANK)
    randomized = SvdParameters(rank=RANK, power_iters=1, iteration="qr")
    results = dask.compute(
        decompose(m, exact).s,
        exact_svd(m, exact).s,
        decompose(m, randomized).s,
        randomized_svd(m, randomized).s,
    )
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[2], results[3])
    assert not np.array_equal(results[0], results[2])


# metrics --------------------------------------------------------------------------------


def test_relative_error_matches_numpy(low_rank: np.ndarray) -> None:
    m = da.from_array(low_rank, chunks=(700, 60))
    rng = np.random.default_rng(1)
    u = rng.standard_normal((3000, 3)).astype(np.float32)
    s = np.array([3.0, 2.0, 1.0], dtype=np.float32)
    vt = rng.standard_normal((3, 200)).astype(np.float32)
    lazy = relative_error(m, da.from_array(u, chunks=(1000, 3)), s, vt)
    assert lazy.shape == ()
    np.testing.assert_allclose(float(lazy.compute()), _error(low_rank, u, s, vt), rtol=1e-6)


def test_relative_error_of_exact_factors_is_optimal(
    low_rank: np.ndarray, reference: tuple[np.ndarray, float]
) -> None:
    m = _frame_chunked(low_rank)
    factors = exact_svd(m, SvdParameters(method="exact", rank=RANK))
    np.testing.assert_allclose(float(relative_error(m, *factors).compute()), reference[1], rtol=1e-4)
    full = exact_svd(m, SvdParameters(method="exact", rank=200))
    assert float(relative_error(m, *full).compute()) < 1e-5


def test_relative_error_edge_cases() -> None:
    zeros = da.zeros((6, 4), dtype=np.float32, chunks=(3, 2))
    assert float(relative_error(zeros, np.zeros((6, 1)), np.zeros(1), np.zeros((1, 4))).compute()) == 0.0
    with pytest.raises(InvalidParameterError, match="do not fit"):
        relative_error(zeros, np.zeros((5, 1)), np.zeros(1), np.zeros((1, 4)))


def test_singular_value_accuracy() -> None:
    reference = np.array([10.0, 5.0, 2.0, 1.0])
    assert singular_value_accuracy(np.array([10.0, 5.5, 2.0]), reference) == pytest.approx(0.1)
    lazy = singular_value_accuracy(da.from_array(np.array([11.0, 5.0])), reference)
    assert isinstance(lazy, da.Array)
    assert float(lazy.compute()) == pytest.approx(0.1)


# under dask.distributed -----------------------------------------------------------------


def test_under_a_distributed_client(low_rank: np.ndarray, reference: tuple[np.ndarray, float]) -> None:
    from distributed import Client, LocalCluster

    from pipelines.matrix import video_matrix

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        m = _frame_chunked(low_rank)
        _check_against_numpy(low_rank, reference, randomized_svd(m, SvdParameters(rank=RANK)), rtol=1e-3)
        _check_against_numpy(
            low_rank,
            reference,
            exact_svd(m, SvdParameters(method="exact", rank=RANK), block_rows=700),
            rtol=1e-5,
        )
        persisted = client.persist(m)
        _check_against_numpy(
            low_rank, reference, randomized_svd(persisted, SvdParameters(rank=RANK)), rtol=1e-3
        )

        # A P2P rechunk cannot run once per pass: M is then held, with a warning.
        frames = np.random.default_rng(0).integers(0, 255, (60, 16, 20), dtype=np.uint8)
        source = da.from_array(frames, chunks=(7, 16, 20))
        params = SvdParameters(rank=3, power_iters=2)
        with dask.config.set({"array.rechunk.method": "p2p"}):
            regrouped = video_matrix(source, frames_per_chunk=60, image_rows_per_chunk=4)
        with pytest.warns(RuntimeWarning, match="P2P rechunk"):
            ours = dask.compute(*randomized_svd(regrouped, params))
        held = dask.compute(*randomized_svd(regrouped, params, keep_in_memory=True))
        for a, b in zip(ours, held, strict=True):
            np.testing.assert_array_equal(a, b)


# the notebook's video -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.shared_data
def test_notebook_video_rank_10_with_default_parameters(tmp_path: Path, shared_data: Path) -> None:
    from pipelines.fused_svd import fused_randomized_svd
    from pipelines.matrix import video_matrix
    from storage.video_array import open_video
    from storage.video_ingest import ingest_videos

    source = shared_data / "bmc2012-video003" / "Video_003.avi"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    ingest_videos([source], store=tmp_path / "video003.zarr", progress=False)
    matrix = video_matrix(open_video(tmp_path / "video003.zarr").frames)
    assert matrix.shape == (76800, 794)

    frames = open_video(tmp_path / "video003.zarr").frames
    for iteration in ("fused", "qr"):  # the default parameters, both iterations
        params = SvdParameters(rank=10, iteration=iteration)
        factors = fused_randomized_svd(frames, params) if iteration == "fused" else decompose(matrix, params)
        _check_notebook_accuracy(matrix, factors)


def _check_notebook_accuracy(matrix: da.Array, factors: Decomposition) -> None:
    u, s, vt, error = dask.compute(*factors, relative_error(matrix, *factors))

    m = matrix.compute().astype(np.float64)
    s_ref = np.linalg.svd(m, compute_uv=False)
    optimal = np.sqrt((s_ref[10:] ** 2).sum() / (s_ref**2).sum())
    assert _error(m, u, s, vt) <= 1.01 * optimal
    assert float(error) == pytest.approx(_error(m, u, s, vt), rel=1e-5)
    assert singular_value_accuracy(s, s_ref[:10]) < 1e-3
    np.testing.assert_allclose(u.T @ u, np.eye(10), atol=1e-4)


def test_auto_iteration_is_fused_and_a_given_iteration_is_kept() -> None:
    assert auto_iteration(params=SvdParameters(rank=10)) == "fused"
    for chosen in ("fused", "qr"):
        assert auto_iteration(params=SvdParameters(rank=10, iteration=chosen)) == chosen
