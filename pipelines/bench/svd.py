"""Benchmark of the SVD: numpy's full SVD against dask's randomized and exact truncated SVDs.

This reproduces the timing table of the original fast.ai notebook: numpy's full SVD,
``numpy.linalg.svd(M, full_matrices=False)``, of random matrices of 100, 1,000 and
10,000 rows by 100, 1,000 and 10,000 columns, next to the rank-10
:func:`pipelines.decompose.randomized_svd` (default :class:`SvdParameters`) and
:func:`pipelines.decompose.exact_svd` (TSQR) of the same float32 matrices, run by
dask's threaded scheduler in this process (no distributed Client: everything is in
memory, as in the notebook).  For each size it reports the medians of ``repeats``
runs, the ratios numpy time / dask time (above 1: dask is faster), and the largest
relative error of dask's ``rank`` singular values against numpy's.

Run it with ``vidsvd bench svd`` (``--help`` for the options).

Notes
-----
The matrices are ``rank`` well separated components plus unit Gaussian noise, so
their top singular values are meaningful (see :func:`low_rank_matrix`).  Each is
wrapped as a dask array in blocks of whole rows of about :data:`CHUNK_BYTES`.  A dask
time covers building the graph and computing U, s and Vt; a numpy time, computing U,
s and Vt.

Numpy's full SVD costs O(m n min(m, n)) for m x n: the 10,000 x 10,000 matrix takes
from minutes to an hour, depending on the machine.  So before a size is run, its time
is estimated from the sizes already measured with that cost model (sizes run from the
cheapest to the dearest; see :func:`estimate_seconds`), and when the estimate exceeds
``max_numpy_seconds`` numpy is not run: the estimate is reported instead, marked
"(est.)" in the table, and there is no accuracy for that size.  The exact (TSQR)
method gets the same treatment with ``max_exact_seconds``; it is not run at all
(shown as "-") when :func:`pipelines.decompose.estimate_exact_memory` exceeds the
memory available, as ``decompose`` would refuse it.

On a machine that other jobs keep busy, set ``OPENBLAS_NUM_THREADS=1``: OpenBLAS's
own threads then wait for cores, and on a two-core machine under a load of 4 to 8
numpy's SVDs ran 10 to 200 times slower, erratically (100 x 1,000: 13 ms alone,
0.2 to 4 s under load), which makes both the table and the estimates meaningless.
With one BLAS thread they stayed within a few per cent.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import dask
import dask.array as da
import numpy as np
import numpy.typing as npt
import psutil

from pipelines.decompose import (
    Decomposition,
    SvdParameters,
    exact_svd,
    randomized_svd,
    singular_value_accuracy,
)
from storage.errors import InvalidParameterError

__all__ = [
    "CHUNK_BYTES",
    "MIN_REFERENCE_SECONDS",
    "NOTEBOOK_SIZES",
    "SvdTiming",
    "estimate_seconds",
    "format_table",
    "low_rank_matrix",
    "svd_cost",
    "time_svds",
]

NOTEBOOK_SIZES: tuple[tuple[int, int], ...] = tuple(
    (rows, cols) for rows in (100, 1000, 10000) for cols in (100, 1000, 10000)
)
"""The (rows, cols) of the notebook's table: every combination of 100, 1,000 and 10,000."""

CHUNK_BYTES = 32 * 2**20
"""Target float32 size of one block of whole rows of the benchmarked dask arrays."""

MIN_REFERENCE_SECONDS = 0.1
"""Measured times below this are too short to extrapolate from (see :func:`estimate_seconds`)."""

_Sizes = Mapping[tuple[int, int], float]


@dataclass(frozen=True, kw_only=True)
class SvdTiming:
    """Median wall times of the three SVDs of one matrix, and dask's accuracy.

    Attributes
    ----------
    rows, cols : int
        Shape of the matrix.
    numpy_s : float or None
        numpy's full SVD, seconds; an estimate when ``numpy_estimated``; None when
        numpy was not run and could not be estimated (``max_numpy_seconds <= 0``).
    randomized_s : float
        dask's randomized SVD, seconds.
    exact_s : float or None
        dask's exact (TSQR) SVD, seconds; an estimate when ``exact_estimated``; None
        when TSQR is not applicable (it would need more memory than is available).
    numpy_estimated, exact_estimated : bool
        The time is the cost model's estimate, not a measurement.
    randomized_error, exact_error : float or None
        Largest relative difference between dask's singular values and numpy's top
        ``rank`` (None when either was not run).
    """

    rows: int
    cols: int
    numpy_s: float | None
    randomized_s: float
    exact_s: float | None
    numpy_estimated: bool = False
    exact_estimated: bool = False
    randomized_error: float | None = None
    exact_error: float | None = None

    @property
    def randomized_ratio(self) -> float | None:
        """Numpy time / randomized time (above 1: the randomized SVD is faster)."""
        return _ratio(self.numpy_s, self.randomized_s)

    @property
    def exact_ratio(self) -> float | None:
        """Numpy time / exact time (above 1: the exact SVD is faster)."""
        return _ratio(self.numpy_s, self.exact_s)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def svd_cost(rows: int, cols: int) -> int:
    """The cost model of a full SVD of a rows x cols matrix: ``rows * cols * min(rows, cols)``."""
    return rows * cols * min(rows, cols)


def estimate_seconds(
    rows: int, cols: int, measured: _Sizes, *, min_reference_seconds: float = MIN_REFERENCE_SECONDS
) -> float | None:
    """Estimate the time of an SVD of rows x cols from the measured times of other sizes.

    Parameters
    ----------
    rows, cols : int
        Shape of the matrix whose time is wanted.
    measured : mapping of (int, int) to float
        Measured seconds by (rows, cols) (:func:`time_svds` gives the fastest of the
        repeats: noise only ever adds time).
    min_reference_seconds : float
        Sizes measured faster than this are references only when no size took longer.

    Returns
    -------
    float or None
        ``t_ref * svd_cost(rows, cols) / svd_cost(*ref)`` for a reference size
        ``ref`` (the mean of that over equally good references: an m x n and an
        n x m); None when nothing was measured.

    Notes
    -----
    The reference is, among the sizes measured in at least ``min_reference_seconds``,
    the one whose aspect ratio ``log(rows / cols)`` is closest, and among those the
    dearest.  LAPACK's SVD of a tall or wide matrix starts with a QR factorisation,
    which is cheaper per unit of ``m n min(m, n)`` than the bidiagonalisation of a
    square one (about three times on the machine this was written on: 1.1 ns for
    10,000 x 1,000, 3.0 ns for 1,000 x 1,000), and numpy treats wide matrices
    differently from tall ones (2.3 ns for 1,000 x 10,000): a single constant for all
    shapes would be off by that much.  Short runs are left out because the model
    scales everything they contain, fixed overheads (dask's are tens of milliseconds)
    and a busy machine's hiccups too, by the cost ratio, 1,000 from 100 x 100 to
    1,000 x 1,000: on a loaded two-core machine one 100 x 100 SVD measured at 0.43 s
    instead of 1.4 ms made 1,000 x 1,000 look like 7 minutes.
    """
    if not measured:
        return None
    aspect = math.log(rows / cols)
    usable = {size: s for size, s in measured.items() if s >= min_reference_seconds} or dict(measured)

    def closeness(size: tuple[int, int]) -> tuple[float, int]:
        return round(abs(math.log(size[0] / size[1]) - aspect), 6), -svd_cost(*size)

    best = min(closeness(size) for size in usable)
    per_cost = [seconds / svd_cost(*size) for size, seconds in usable.items() if closeness(size) == best]
    return statistics.fmean(per_cost) * svd_cost(rows, cols)


def low_rank_matrix(rows: int, cols: int, *, rank: int = 10, seed: int = 0) -> npt.NDArray[np.float32]:
    """A random float32 matrix: ``rank`` well separated components plus unit Gaussian noise.

    The components are random orthonormal columns and rows with singular values from
    30 down to 12 (in steps of 2, for rank 10) times ``sqrt(rows) + sqrt(cols)``, the
    edge of the noise's own spectrum, so the top ``rank`` singular values stand well
    clear of the noise and of each other.
    """
    rng = np.random.default_rng(seed)
    left, _ = np.linalg.qr(rng.standard_normal((rows, rank)))
    right, _ = np.linalg.qr(rng.standard_normal((cols, rank)))
    edge = math.sqrt(rows) + math.sqrt(cols)
    strengths = edge * (10.0 + 2.0 * np.arange(rank, 0, -1))
    signal = ((left * strengths).astype(np.float32)) @ right.T.astype(np.float32)
    matrix = rng.standard_normal((rows, cols), dtype=np.float32)
    matrix += signal
    return matrix


def _dask_matrix(matrix: npt.NDArray[np.float32]) -> da.Array:
    """``matrix`` as a dask array in blocks of whole rows of about CHUNK_BYTES."""
    rows, cols = matrix.shape
    n_blocks = max(1, math.ceil(matrix.nbytes / CHUNK_BYTES))
    return da.from_array(matrix, chunks=(math.ceil(rows / n_blocks), cols))


def _timed(run: Callable[[], npt.NDArray[np.floating]]) -> tuple[float, npt.NDArray[np.floating]]:
    started = time.perf_counter()
    s = run()
    return time.perf_counter() - started, s


def _numpy_run(matrix: npt.NDArray[np.float32]) -> Callable[[], npt.NDArray[np.floating]]:
    def run() -> npt.NDArray[np.floating]:
        _, s, _ = np.linalg.svd(matrix, full_matrices=False)
        return s

    return run


def _dask_run(build: Callable[[], Decomposition]) -> Callable[[], npt.NDArray[np.floating]]:
    def run() -> npt.NDArray[np.floating]:
        _, s, _ = dask.compute(*build(), scheduler="threads")
        return np.asarray(s)

    return run


def _warm_up(matrix: npt.NDArray[np.float32], randomized: SvdParameters, exact: SvdParameters) -> None:
    """Run each method once, untimed: the first call of each pays for imports and set-up."""
    lazy = _dask_matrix(matrix)
    _numpy_run(matrix)()
    _dask_run(partial(randomized_svd, lazy, randomized))()
    _dask_run(partial(exact_svd, lazy, exact))()


def _exact_applicable(matrix: da.Array, params: SvdParameters, threads: int) -> bool:
    """Whether :func:`exact_svd` accepts M within the memory available now."""
    try:
        exact_svd(matrix, params, memory_limit_bytes=psutil.virtual_memory().available, threads=threads)
    except InvalidParameterError:
        return False
    return True


def time_svds(
    sizes: Sequence[tuple[int, int]],
    *,
    repeats: int = 3,
    max_numpy_seconds: float = 60.0,
    max_exact_seconds: float = 60.0,
    rank: int = 10,
    seed: int = 0,
) -> list[SvdTiming]:
    """Time numpy's full SVD and dask's randomized and exact SVDs on matrices of ``sizes``.

    Parameters
    ----------
    sizes : sequence of (int, int)
        (rows, cols) of the matrices, e.g. :data:`NOTEBOOK_SIZES`.
    repeats : int
        Runs of each method per size (alternating numpy, randomized, exact); the
        medians are reported.
    max_numpy_seconds : float
        numpy is not run on a size whose estimated time (see :func:`estimate_seconds`)
        exceeds this; the estimate is reported instead.  0 or less: numpy is never run.
    max_exact_seconds : float
        The same for the exact (TSQR) SVD.
    rank : int
        Rank of the dask SVDs, and of the matrices' signal (:func:`low_rank_matrix`).
    seed : int
        Seed of the matrices; the randomized SVD uses its default seed.

    Returns
    -------
    list of SvdTiming
        One per size, in the order of ``sizes``.

    Notes
    -----
    Each method is first run once, untimed, on a small matrix.  Sizes are then run
    from the cheapest to the dearest (:func:`svd_cost`), so that every estimate rests
    on the sizes measured before it (on the fastest of each one's repeats).  The
    first size of each method is always run (there is nothing to estimate it from),
    except numpy's when ``max_numpy_seconds <= 0``.  Memory: the matrix, numpy's U
    and Vt (as much again), and for the exact SVD a float32 copy of M plus its R
    factors.
    """
    if repeats < 1:
        raise InvalidParameterError(f"repeats must be 1 or more, got {repeats}")
    threads = os.cpu_count() or 1
    randomized = SvdParameters(method="randomized", rank=rank)
    exact = SvdParameters(method="exact", rank=rank)
    side = max(64, 2 * rank)
    _warm_up(low_rank_matrix(side, side, rank=rank, seed=seed), randomized, exact)
    numpy_measured: dict[tuple[int, int], float] = {}
    exact_measured: dict[tuple[int, int], float] = {}
    results: dict[tuple[int, int], SvdTiming] = {}
    for rows, cols in sorted(set(sizes), key=lambda size: svd_cost(*size)):
        matrix = low_rank_matrix(rows, cols, rank=rank, seed=seed)
        lazy = _dask_matrix(matrix)
        numpy_estimate = estimate_seconds(rows, cols, numpy_measured)
        run_numpy = max_numpy_seconds > 0 and (numpy_estimate is None or numpy_estimate <= max_numpy_seconds)
        exact_ok = _exact_applicable(lazy, exact, threads)
        exact_estimate = estimate_seconds(rows, cols, exact_measured)
        run_exact = exact_ok and (exact_estimate is None or exact_estimate <= max_exact_seconds)

        runs: dict[str, Callable[[], npt.NDArray[np.floating]]] = {
            "randomized": _dask_run(partial(randomized_svd, lazy, randomized))
        }
        if run_numpy:
            runs["numpy"] = _numpy_run(matrix)
        if run_exact:
            runs["exact"] = _dask_run(partial(exact_svd, lazy, exact, threads=threads))
        times: dict[str, list[float]] = {name: [] for name in runs}
        values: dict[str, npt.NDArray[np.floating]] = {}
        for _ in range(repeats):
            for name in ("numpy", "randomized", "exact"):
                if name in runs:
                    elapsed, values[name] = _timed(runs[name])
                    times[name].append(elapsed)
        medians = {name: statistics.median(measured) for name, measured in times.items()}

        if run_numpy:
            numpy_measured[rows, cols] = min(times["numpy"])
        if run_exact:
            exact_measured[rows, cols] = min(times["exact"])
        reference = values["numpy"][:rank] if run_numpy else None
        results[rows, cols] = SvdTiming(
            rows=rows,
            cols=cols,
            numpy_s=medians["numpy"] if run_numpy else (numpy_estimate if max_numpy_seconds > 0 else None),
            randomized_s=medians["randomized"],
            exact_s=medians["exact"] if run_exact else (exact_estimate if exact_ok else None),
            numpy_estimated=max_numpy_seconds > 0 and not run_numpy,
            exact_estimated=exact_ok and not run_exact,
            randomized_error=_accuracy(values.get("randomized"), reference),
            exact_error=_accuracy(values.get("exact"), reference),
        )
    return [results[size] for size in sizes]


def _accuracy(s: npt.NDArray[np.floating] | None, reference: npt.NDArray[np.floating] | None) -> float | None:
    if s is None or reference is None:
        return None
    return float(singular_value_accuracy(s, reference))


def _seconds(value: float | None, estimated: bool) -> str:
    if value is None:
        return "-"
    text = f"{value:.0f}" if value >= 100 else f"{value:.2f}" if value >= 1 else f"{value:.4f}"
    return f"{text} (est.)" if estimated else text


def _times(value: float | None, estimated: bool) -> str:
    if value is None:
        return "-"
    text = f"{value:.0f}x" if value >= 100 else f"{value:#.3g}x"
    return f"{text} (est.)" if estimated else text


def _error(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


def format_table(rows: Sequence[SvdTiming]) -> str:
    """A plain-text table of timings: seconds, ratios numpy / dask, errors of s.

    Estimated times, and ratios computed from one, are marked "(est.)"; "-" stands for
    a method that was not run and a ratio or error that cannot be computed.
    """
    header = (
        f"{'rows':>6} {'cols':>6} {'numpy s':>14} {'randomized s':>13} {'numpy/rand':>16} "
        f"{'exact s':>14} {'numpy/exact':>16} {'rand err s':>11} {'exact err s':>11}"
    )
    lines = [header]
    for r in rows:
        either = r.numpy_estimated or r.exact_estimated
        lines.append(
            f"{r.rows:6d} {r.cols:6d} {_seconds(r.numpy_s, r.numpy_estimated):>14} "
            f"{_seconds(r.randomized_s, False):>13} {_times(r.randomized_ratio, r.numpy_estimated):>16} "
            f"{_seconds(r.exact_s, r.exact_estimated):>14} {_times(r.exact_ratio, either):>16} "
            f"{_error(r.randomized_error):>11} {_error(r.exact_error):>11}"
        )
    return "\n".join(lines)
