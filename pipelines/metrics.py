"""How good a rank-k decomposition is: size, reconstruction error, quality of the masks.

- Size: keeping k components costs ``k * (P + 1 + T)`` numbers instead of ``P * T``
  (:func:`compression_fraction`, :func:`factor_bytes`, :func:`rank_table`).
- Reconstruction: the exact relative error ``||M - U_k S_k Vt_k||_F / ||M||_F`` for a
  few ranks at once, in one lazy pass over M (:func:`squared_residuals`,
  :func:`relative_errors`, :func:`mean_squared_errors`, :func:`psnr`), and the share of
  the energy the first components hold (:func:`cumulative_energy`).

Masks against ground truth are scored in :mod:`pipelines.scores`.

The lazy functions take and return dask arrays and never compute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import dask.array as da
import numpy as np
import numpy.typing as npt

from pipelines.shapes import is_int
from storage.errors import InvalidParameterError

__all__ = [
    "compression_fraction",
    "cumulative_energy",
    "factor_bytes",
    "mean_squared_errors",
    "psnr",
    "rank_table",
    "relative_errors",
    "squared_residuals",
]


# --- size ------------------------------------------------------------------------------


def compression_fraction(rank: int, n_pixels: int, n_frames: int) -> float:
    """Return the size of the rank-k factors relative to M: ``k (P + 1 + T) / (P T)``.

    U_k holds P k numbers, s_k k and Vt_k k T, against P T for M.  The original
    notebook's 100 s clip at 160 x 120 and 60 fps (P = 19200, T = 6000) kept
    k = 700 components, 15.3 % of M.

    Raises
    ------
    InvalidParameterError
        An argument is not a positive integer.
    """
    _check_positive_ints(rank=rank, n_pixels=n_pixels, n_frames=n_frames)
    return rank * (n_pixels + 1 + n_frames) / (n_pixels * n_frames)


def factor_bytes(rank: int, n_pixels: int, n_frames: int, *, itemsize: int = 4) -> int:
    """Return the bytes of the rank-k factors: ``k (P + 1 + T) * itemsize`` (4: float32).

    Raw, before any compression of the stored arrays.
    """
    _check_positive_ints(rank=rank, n_pixels=n_pixels, n_frames=n_frames, itemsize=itemsize)
    return rank * (n_pixels + 1 + n_frames) * itemsize


def rank_table(
    ranks: Sequence[int],
    *,
    n_pixels: int,
    n_frames: int,
    relative_errors: Sequence[float] | npt.ArrayLike,
    mean_squared_errors: Sequence[float] | npt.ArrayLike,
    stored_video_bytes: int | None = None,
    itemsize: int = 4,
) -> list[dict[str, float | int | None]]:
    """Tabulate size and error per rank, one dict per rank (report.json's ``ranks``).

    Parameters
    ----------
    ranks : sequence of int
        The ranks, in the order of the errors.
    n_pixels, n_frames : int
        P and T.
    relative_errors, mean_squared_errors : sequence of float
        Computed values of :func:`relative_errors` and :func:`mean_squared_errors`.
    stored_video_bytes : int, optional
        Compressed bytes of the stored video (``StoredVideo.stored_bytes``).
    itemsize : int
        Bytes per factor value (4 for float32).

    Returns
    -------
    list of dict
        Keys: ``rank``; ``compression_fraction`` (of M's P T numbers); ``factor_bytes``;
        ``bytes_vs_raw`` (factor bytes / the P T bytes of the uint8 video);
        ``bytes_vs_stored`` (factor bytes / ``stored_video_bytes``, None without it);
        ``relative_error``; ``mse``; ``psnr_db`` (peak 255).
    """
    errors = np.asarray(relative_errors, dtype=np.float64)
    mses = np.asarray(mean_squared_errors, dtype=np.float64)
    if errors.shape != (len(ranks),) or mses.shape != (len(ranks),):
        raise InvalidParameterError(
            f"need one relative error and one MSE per rank ({len(ranks)}),"
            f" got {errors.shape[0] if errors.ndim else 1} and {mses.shape[0] if mses.ndim else 1}"
        )
    rows: list[dict[str, float | int | None]] = []
    for rank, error, mse in zip(ranks, errors, mses, strict=True):
        nbytes = factor_bytes(rank, n_pixels, n_frames, itemsize=itemsize)
        rows.append(
            {
                "rank": int(rank),
                "compression_fraction": compression_fraction(rank, n_pixels, n_frames),
                "factor_bytes": nbytes,
                "bytes_vs_raw": nbytes / (n_pixels * n_frames),
                "bytes_vs_stored": nbytes / stored_video_bytes if stored_video_bytes else None,
                "relative_error": float(error),
                "mse": float(mse),
                "psnr_db": float(psnr(float(mse))),
            }
        )
    return rows


# --- reconstruction error --------------------------------------------------------------


def squared_residuals(
    M: da.Array,  # noqa: N803 - DESIGN.md's names
    U: npt.ArrayLike | da.Array,  # noqa: N803
    s: npt.ArrayLike | da.Array,
    Vt: npt.ArrayLike | da.Array,  # noqa: N803
    ranks: Sequence[int],
) -> da.Array:
    """Return ``||M - U_k S_k Vt_k||_F^2`` for each rank k, then ``||M||_F^2``, lazily.

    Parameters
    ----------
    M : dask.array.Array
        Shape (pixel, frame), any chunks, float or uint8 (e.g.
        :func:`pipelines.matrix.video_matrix`, or :func:`pipelines.matrix.video_columns`,
        whose uint8 blocks are converted a tile at a time: no float32 copy of M).
    U, s, Vt : array_like or dask.array.Array
        Factors of shapes (pixel, component), (component,), (component, frame).
    ranks : sequence of int
        Ranks, each in 1..components, any order, repeats allowed.

    Returns
    -------
    dask.array.Array
        Shape (len(ranks) + 1,), float64: the squared residual norm for each rank in
        the order given, then the squared norm of M.

    Raises
    ------
    InvalidParameterError
        Shapes that do not fit together, or ranks out of range.

    Notes
    -----
    Exact and numerically safe: for each block of M, the residual at the largest
    rank K, ``R_K = M - U_K A_K`` with ``A = diag(s) Vt``, is formed explicitly in
    float64 and its squared norm taken; a lower rank k adds back the components it
    drops, ``D = U_(k:K) A_(k:K)``::

        ||R_k||^2 = ||R_K + D||^2 = ||R_K||^2 + 2 <R_K, D> + ||D||^2

    with ``<R_K, D>`` from ``U_K^T R_K`` and ``||D||^2`` from ``U_K^T U_K`` (both
    (K, .) sums of the same sweep), so no orthonormality is assumed.  Every term is
    of the size of the residual asked for (the cross term is small where R_K is the
    residual of a fit), unlike ``||M||^2 - sum s_i^2``, which subtracts from the
    norm of M and cancels catastrophically.  Rank 0 gives ``||M||^2``.  One pass over
    M serves every rank, with one (tile, K) x (K, n) product and its transpose per
    tile: 4 times faster than subtracting rank group by rank group.

    Memory per task: the block of M (as given), two float64 tiles of 2 MiB, and the
    block's rows of ``U_kmax`` (float64) and columns of ``Vt_kmax``.
    """
    m = da.asarray(M)
    u, s_, vt = (da.asarray(a) for a in (U, s, Vt))
    if m.ndim != 2 or u.ndim != 2 or s_.ndim != 1 or vt.ndim != 2:
        raise InvalidParameterError(
            "need M (pixel, frame), U (pixel, component), s (component,), Vt (component, frame);"
            f" got shapes {tuple(m.shape)}, {tuple(u.shape)}, {tuple(s_.shape)}, {tuple(vt.shape)}"
        )
    n_components = int(s_.shape[0])
    if (
        u.shape[0] != m.shape[0]
        or vt.shape[1] != m.shape[1]
        or u.shape[1] != n_components
        or vt.shape[0] != n_components
    ):
        raise InvalidParameterError(
            f"M {tuple(m.shape)} and factors U {tuple(u.shape)}, s {tuple(s_.shape)},"
            f" Vt {tuple(vt.shape)} do not fit together; use the factors of this video's M"
        )
    wanted = [int(r) for r in ranks] if all(is_int(r) for r in ranks) else None
    if not wanted or any(not 1 <= r <= n_components for r in wanted):
        raise InvalidParameterError(
            f"ranks must be a non-empty list of integers in 1..{n_components}, got {list(ranks)!r}"
        )
    steps = sorted(set(wanted))
    k_max = steps[-1]
    u_k = u[:, :k_max].rechunk({0: m.chunks[0], 1: -1})
    s_k = s_[:k_max].rechunk(-1)
    vt_k = vt[:k_max].rechunk({0: -1, 1: m.chunks[1]})
    partial = da.blockwise(
        _residual_block,
        "ijr",
        m,
        "ij",
        u_k,
        "ik",
        s_k,
        "k",
        vt_k,
        "kj",
        new_axes={"r": len(steps) + 1},
        adjust_chunks={"i": 1, "j": 1},
        concatenate=True,
        dtype=np.float64,
        meta=np.empty((0, 0, 0), dtype=np.float64),
        steps=tuple(steps),
    )
    sums = partial.sum(axis=(0, 1))
    order = [steps.index(r) for r in wanted] + [len(steps)]
    return sums[np.array(order)]


def relative_errors(
    M: da.Array,  # noqa: N803 - DESIGN.md's names
    U: npt.ArrayLike | da.Array,  # noqa: N803
    s: npt.ArrayLike | da.Array,
    Vt: npt.ArrayLike | da.Array,  # noqa: N803
    ranks: Sequence[int],
) -> da.Array:
    """Return ``||M - U_k S_k Vt_k||_F / ||M||_F`` for each rank, lazily.

    Shape (len(ranks),), float64, in the order of ``ranks``.  An all-zero M (a black
    video) reconstructed exactly has error 0; reconstructed with anything else, NaN.
    See :func:`squared_residuals` for the method and memory; computing this and
    :func:`mean_squared_errors` together (``dask.compute(a, b)``) reads M once.
    """
    sums = squared_residuals(M, U, s, Vt, ranks)
    residuals, total = sums[:-1], sums[-1]
    return da.where(
        total > 0,
        da.sqrt(residuals / da.where(total > 0, total, 1.0)),
        da.where(residuals == 0, 0.0, np.nan),
    )


def mean_squared_errors(
    M: da.Array,  # noqa: N803 - DESIGN.md's names
    U: npt.ArrayLike | da.Array,  # noqa: N803
    s: npt.ArrayLike | da.Array,
    Vt: npt.ArrayLike | da.Array,  # noqa: N803
    ranks: Sequence[int],
) -> da.Array:
    """Return the mean squared reconstruction error per value, ``||M - M_k||_F^2 / (P T)``.

    Shape (len(ranks),), float64, lazily, in grey levels squared (for :func:`psnr`).
    """
    sums = squared_residuals(M, U, s, Vt, ranks)
    return sums[:-1] / float(math.prod(int(n) for n in M.shape))


def psnr(mse: npt.ArrayLike | da.Array, *, peak: float = 255.0) -> npt.NDArray[np.float64] | da.Array:
    """Return the peak signal-to-noise ratio in dB: ``10 log10(peak^2 / mse)``.

    Infinite where ``mse`` is 0 (a perfect reconstruction).  Same shape as ``mse``;
    lazy for a dask array.
    """
    if isinstance(mse, da.Array):
        return mse.map_blocks(_psnr, peak=float(peak), dtype=np.float64)
    return _psnr(np.asarray(mse, dtype=np.float64), peak=float(peak))


def cumulative_energy(s: npt.ArrayLike, *, total: float | None = None) -> npt.NDArray[np.float64]:
    """Return the share of the energy held by the first 1, 2, ... components.

    The energy of component i is ``s_i**2``; element i of the result is
    ``sum(s[:i+1]**2) / total``.

    Parameters
    ----------
    s : array_like
        Singular values (component,), in memory.
    total : float, optional
        The energy of the whole matrix, ``||M||_F^2`` (the last element of
        :func:`squared_residuals`).  By default the energy of the given components,
        so the curve ends at 1 even when the SVD was truncated.

    Returns
    -------
    ndarray of float64
        Shape (component,), non-decreasing, in [0, 1].

    Raises
    ------
    InvalidParameterError
        ``s`` is a dask array or not one-dimensional, or ``total`` is smaller than the
        components' energy.
    """
    if isinstance(s, da.Array):
        raise InvalidParameterError("cumulative_energy needs s in memory, got a dask array; pass s.compute()")
    values = np.asarray(s, dtype=np.float64)
    if values.ndim != 1:
        raise InvalidParameterError(f"s must have shape (component,), got {values.shape}")
    cumulative = np.cumsum(values**2)
    known = float(cumulative[-1]) if cumulative.size else 0.0
    if total is None:
        total = known
    elif not math.isfinite(total) or total < known * (1 - 1e-6):
        raise InvalidParameterError(
            f"total energy {total!r} is smaller than the components' energy {known!r};"
            " pass ||M||_F^2 of the same matrix"
        )
    if total <= 0:
        return np.zeros_like(cumulative)
    result: npt.NDArray[np.float64] = np.minimum(cumulative / total, 1.0)
    return result


# --- helpers ---------------------------------------------------------------------------


def _residual_block(
    m: npt.NDArray[np.floating] | npt.NDArray[np.uint8],
    u: npt.NDArray[np.floating],
    s: npt.NDArray[np.floating],
    vt: npt.NDArray[np.floating],
    *,
    steps: tuple[int, ...],
) -> npt.NDArray[np.float64]:
    """One block of M -> (1, 1, len(steps) + 1): squared residual per rank, squared norm.

    The residual ``R = M - U_K A_K`` at the largest rank K (``A = diag(s) Vt``) is
    formed explicitly in float64, a tile of pixel rows at a time, in two buffers made
    once per block and laid out as the block is (a C buffer for a Fortran block made
    the copy a transpose: 1.6x slower).  (A fresh block-sized temporary per tile is
    mapped and faulted in anew where distributed's workers set
    ``MALLOC_TRIM_THRESHOLD_``.)  The same sweep sums ``U_K^T U_K`` and ``U_K^T R``,
    from which each lower rank's residual follows (see :func:`squared_residuals`).
    """
    k_max = steps[-1]
    u64 = u[:, :k_max].astype(np.float64)
    weights = s[:k_max].astype(np.float64)[:, np.newaxis] * vt[:k_max].astype(np.float64)  # (K, n)
    n_rows, n_columns = m.shape
    tile_rows = max(1, _RESIDUAL_TILE_VALUES // max(n_columns, 1))
    order: Literal["C", "F"] = "F" if m.flags.f_contiguous and not m.flags.c_contiguous else "C"
    residual_buffer = np.empty((min(tile_rows, n_rows), n_columns), dtype=np.float64, order=order)
    product_buffer = np.empty_like(residual_buffer)
    at_k_max = 0.0
    gram = np.zeros((k_max, k_max), dtype=np.float64)  # U_K^T U_K
    cross = np.zeros((k_max, n_columns), dtype=np.float64)  # U_K^T R
    for start in range(0, n_rows, tile_rows):
        stop = min(start + tile_rows, n_rows)
        residual, product = residual_buffer[: stop - start], product_buffer[: stop - start]
        np.copyto(residual, m[start:stop])
        rows = u64[start:stop]
        np.matmul(rows, weights, out=product)
        residual -= product
        flat = residual.reshape(-1, order="A")
        at_k_max += float(np.dot(flat, flat))
        cross += rows.T @ residual
        gram += rows.T @ rows
    out = np.empty(len(steps) + 1, dtype=np.float64)
    for index, k in enumerate((*steps, 0)):  # rank 0: the squared norm of M itself
        dropped = weights[k:]
        added_back = float(np.sum(dropped * (gram[k:, k:] @ dropped)) + 2.0 * np.sum(dropped * cross[k:]))
        out[index] = max(at_k_max + added_back, 0.0)
    return out.reshape(1, 1, -1)


_RESIDUAL_TILE_VALUES = 2**18
"""Values of M per tile of :func:`_residual_block` (2 MiB of float64)."""


def _psnr(mse: npt.NDArray[np.float64], *, peak: float) -> npt.NDArray[np.float64]:
    with np.errstate(divide="ignore"):
        result: npt.NDArray[np.float64] = 10.0 * np.log10(peak**2 / np.asarray(mse, dtype=np.float64))
    return result


def _check_positive_ints(**values: int) -> None:
    for name, value in values.items():
        if not is_int(value) or value < 1:
            raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}")
