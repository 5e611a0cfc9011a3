"""The exact SVD of a short video from its Gram matrix M^T M, computed exactly; lazy.

For M (P x T) with few frames T, the Gram matrix G = M^T M (T x T) holds everything
the right singular vectors and singular values need: G = V diag(s^2) V^T.  With M's
uint8 values, G is a matrix of integers, and it is computed *exactly*: float32 products
over :data:`EXACT_PIXELS` pixels at a time (256 x 255^2 < 2^24, so every partial sum
of a product is an integer float32 holds exactly, in any order of summation), added in
float64 (exact up to 2^53, P x 255^2 for any video this size).  Its eigendecomposition
in float64 then gives s with a relative error of about 1e-16 (s_1 / s_i)^2 -- far below
float32's resolution for any component of a video's spectrum -- where the TSQR of M
in float32 gives about 1e-7 (s_1 / s_i) and the randomized method about 1e-4 (see
:mod:`pipelines.decompose`).  U = M V diag(1/s) follows in a second read, in float64.

Two reads of the frames, ``P T^2`` flops for G (half of the pairs of frame groups,
by symmetry) and ``2 P T k`` for U, against ``2 P T^2`` and a float32 copy of M held
in memory for TSQR, and ``12 P T l`` (l sketch columns, 50 at rank 10) for the
randomized method's defaults: the Gram is the cheaper for T below about 12 l (600 at
rank 10), and it is exact.  Its cost grows with T^2, so it is for short videos.  The
tasks take pairs of G frame groups, so each group is read by G tasks: G + 1 reads of
the frames in all unless they are held in worker memory
(:meth:`pipelines.steps.context.JobContext.frames_to_read`), then one.

Memory: per pair task, two groups of uint8 frames, two float32 tiles of a few MB and
the pair's block of G (float64); the task that solves holds G (8 T^2 bytes) and its
eigenvectors; per U task, a (P, k) float64 partial.  Communication: each group goes to
every task of its row and column of pairs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from itertools import combinations_with_replacement
from typing import Any, Final

import dask
import dask.array as da
import numpy as np
import numpy.typing as npt
from dask.array.linalg import compression_level

from pipelines.chunk_groups import chunk_groups, sum_partials
from pipelines.decompose import Decomposition, SvdParameters
from pipelines.graph_copy import fresh_copies
from storage.errors import InvalidParameterError

__all__ = [
    "EXACT_PIXELS",
    "GRAM_MAX_FRAMES",
    "GRAM_PASSES",
    "choose_method",
    "gram_exact_svd",
    "gram_fits",
    "gram_frames_per_task",
]

EXACT_PIXELS: Final = 256
"""Pixels per float32 product of G's tiles: 256 x 255^2 = 16,646,400 < 2^24, so the
products of uint8 values are exact integers in float32."""

_PRODUCTS_PER_TILE: Final = 16
"""Products of :data:`EXACT_PIXELS` batched in one ``matmul`` (4,096 pixels per tile):
few Python iterations, tiles of a few MB."""

GRAM_MAX_FRAMES: Final = 8192
"""Most frames the Gram method takes: G is 8 T^2 bytes (512 MiB at 8,192) in the task
that solves it, whose reduction to tridiagonal form costs about 4/3 T^3 flops."""

GRAM_PASSES: Final = 2
"""Reads of the frames: one for G, one for U."""


_DROP_RATIO: Final = 1e-13
"""Eigenvalues below this share of the largest are dropped (s = 0, zero U and Vt rows)."""


def gram_fits(*, n_pixels: int, n_frames: int, dtype: npt.DTypeLike) -> bool:
    """Whether :func:`gram_exact_svd` takes this video (the exact method uses TSQR otherwise).

    Parameters
    ----------
    n_pixels, n_frames : int
        P and T of M.
    dtype : dtype
        The frames' dtype: uint8 only (G is exact for integers up to 255).

    Returns
    -------
    bool
        True for uint8 frames, at most :data:`GRAM_MAX_FRAMES` of them and no more than
        pixels.
    """
    return np.dtype(dtype) == np.uint8 and 1 <= n_frames <= min(GRAM_MAX_FRAMES, n_pixels)


def choose_method(
    params: SvdParameters, *, n_pixels: int, n_frames: int, dtype: npt.DTypeLike
) -> SvdParameters:
    """``params`` with the method ``auto`` resolved: ``exact`` where the Gram is the cheaper.

    Parameters
    ----------
    params : SvdParameters
        Returned as they are unless their method is ``auto``.  Randomized options other
        than the defaults (power iterations, oversampling, seed, iteration) ask for the
        randomized method.
    n_pixels, n_frames, dtype
        As for :func:`gram_fits`: the choice depends on the video alone, not on the
        cluster, so a command names the same factors wherever it runs.

    Returns
    -------
    SvdParameters
        Method ``exact`` when :func:`gram_fits` and the Gram's ``4/3 P T^2`` flops (three
        or more groups) are at most the randomized method's ``4 P T l (q + 1)`` (sketch
        and last pass ``2 P T l`` each, ``4 P T l`` per power iteration; l sketch
        columns, q power iterations), that is ``T <= 3 l (q + 1)``: 450 frames at rank
        10 and the defaults.  ``randomized`` otherwise.  The Gram's products also run
        closer to the GEMM rate (the README's sizing section), so near the bound it is
        the faster; the bound counts flops alone, and the Gram is exact.
    """
    if params.method != "auto":
        return params
    defaults = SvdParameters(rank=params.rank)
    options = ("power_iters", "oversample", "seed", "iteration")
    if any(getattr(params, option) != getattr(defaults, option) for option in options):
        return dataclasses.replace(params, method="randomized")
    width = compression_level(min(n_pixels, n_frames), params.rank, n_oversamples=params.oversample)
    cheaper = n_frames <= 3 * width * (params.power_iters + 1)
    fits = gram_fits(n_pixels=n_pixels, n_frames=n_frames, dtype=dtype)
    return dataclasses.replace(params, method="exact" if fits and cheaper else "randomized")


def gram_frames_per_task(
    *, n_frames: int, video_chunk_frames: int, threads: int, max_group_frames: int | None = None
) -> int:
    """Frames per group for :func:`gram_exact_svd`: the fewest groups giving 2 pair tasks per thread.

    G groups make G (G + 1) / 2 pair tasks and cost (G + 1) / G times ``P T^2`` flops
    (a diagonal pair computes its whole block), and a pair's products run closer to the
    GEMM rate with more frames per group (the README's sizing section), so G is the
    smallest that keeps every thread busy, and no group is larger than
    ``max_group_frames`` (a pair task holds two groups).  At least one video chunk per
    group.
    """
    groups = 1
    while groups * (groups + 1) // 2 < 2 * max(threads, 1) and groups < n_frames:
        groups += 1
    per_group = -(-n_frames // groups)
    if max_group_frames is not None:
        per_group = min(per_group, max_group_frames)
    return max(video_chunk_frames, per_group)


def gram_exact_svd(
    frames: da.Array,
    params: SvdParameters,
    *,
    frames_per_task: int | None = None,
    keep_in_memory: bool = True,
) -> tuple[Decomposition, da.Array]:
    """The exact truncated SVD of M = the frames as columns, from M^T M; lazy.

    Parameters
    ----------
    frames : dask.array.Array
        Shape (T, y, x) or (T, y, x, 3), uint8, whole frames per chunk, best held in
        worker memory (persisted): each group of chunks is read by as many tasks as there
        are groups.  Column t of M is frame t flattened, P = y x [x 3] values.
    params : SvdParameters
        ``rank`` is used.
    frames_per_task : int, optional
        Consecutive chunks are grouped into groups of at least this many frames; a task
        computes one pair of groups' block of G.  None: one chunk per group.
    keep_in_memory : bool
        True: one graph, so each chunk is read once and kept until its pairs are done
        (frames persisted on the workers, or small).  False: each pair task and the
        pass for U read their chunks from a fresh copy of the frames' graph, so only
        the running tasks' groups are in memory: G + 1 reads of the video for G groups.

    Returns
    -------
    Decomposition
        U (P, k), s (k,), Vt (k, T), float32, lazy, signs as
        :func:`dask.array.utils.svd_flip` fixes them (each row of Vt sums to 0 or
        more).  Deterministic: G is exact, so the result depends on nothing but M.
    dask.array.Array
        The energies, (k + 1,) float64, lazy: ``trace(G) = ||M||_F^2`` (exact), then
        the eigenvalues ``s_i^2`` (0 where dropped).  ``trace(G) - sum(s_i^2, i <= r)``
        is the squared error of the best rank-r approximation, r <= k, to float64
        rounding of G's eigendecomposition: the report needs no pass over M for it.

    Raises
    ------
    InvalidParameterError
        Frames not uint8, more frames than :data:`GRAM_MAX_FRAMES` or than pixels, or a
        rank out of range.
    """
    if frames.dtype != np.uint8 or not (frames.ndim == 3 or frames.shape[-1:] == (3,)):
        raise InvalidParameterError(f"gram_exact_svd needs uint8 frames (T, y, x[, 3]), got {frames.dtype}")
    if any(len(chunks) != 1 for chunks in frames.chunks[1:]):
        frames = frames.rechunk({axis: -1 for axis in range(1, frames.ndim)})
    n_frames = int(frames.shape[0])
    n_pixels = int(np.prod(frames.shape[1:], dtype=np.int64))
    params.validate(n_pixels, n_frames)
    if not gram_fits(n_pixels=n_pixels, n_frames=n_frames, dtype=frames.dtype):
        raise InvalidParameterError(
            f"the Gram method takes at most min({GRAM_MAX_FRAMES}, pixels) frames, got {n_frames} frames "
            f"of {n_pixels} values; use the TSQR (exact_svd) or the randomized method"
        )
    k = params.rank
    groups = chunk_groups(frames.chunks[0], frames_per_task=frames_per_task)
    read: Callable[[], da.Array] = (lambda: frames) if keep_in_memory else fresh_copies(frames)

    def group_blocks() -> list[list[Any]]:
        blocks = list(read().to_delayed().ravel())
        return [[blocks[i] for i in group] for group in groups]

    pairs = list(combinations_with_replacement(range(len(groups)), 2))
    gram_blocks = []
    for a, b in pairs:
        held = group_blocks()
        gram_blocks.append(dask.delayed(_gram_block, pure=True)(held[a], None if a == b else held[b]))
    sizes = [sum(frames.chunks[0][i] for i in group) for group in groups]
    solved = dask.delayed(_solve, pure=True)(gram_blocks, pairs, sizes, k)
    firsts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    held = group_blocks()
    lifted = [
        dask.delayed(_lift_group, pure=True)(held[index], solved, int(firsts[index]))
        for index in range(len(groups))
    ]
    # summed into copies: a task run again (a worker failure) finds its inputs as they were
    u = sum_partials(lifted, shape=(n_pixels, k), dtype=np.float64).astype(np.float32)
    s = da.from_delayed(
        dask.delayed(_singular_values, pure=True)(solved),
        shape=(k,), dtype=np.float32, meta=np.empty((0,), np.float32),
    )  # fmt: skip
    vt = da.from_delayed(
        dask.delayed(_right_vectors, pure=True)(solved),
        shape=(k, n_frames), dtype=np.float32, meta=np.empty((0, 0), np.float32),
    )  # fmt: skip
    diagonal = [block for block, (a, b) in zip(gram_blocks, pairs, strict=True) if a == b]
    energies = da.from_delayed(
        dask.delayed(_energies, pure=True)(diagonal, solved),
        shape=(k + 1,), dtype=np.float64, meta=np.empty((0,), np.float64),
    )  # fmt: skip
    return Decomposition(u, s, vt), energies


def _values(blocks: list[npt.NDArray[np.uint8]]) -> list[npt.NDArray[np.uint8]]:
    """(n, y, x[, c]) chunks -> (n, P) views: row t is frame t flattened (M_j^T)."""
    return [block.reshape(block.shape[0], -1) for block in blocks]


class _ExactTiles:
    """A group's frames a tile of pixels at a time, as float32 (products, n, EXACT_PIXELS).

    One buffer, reused for every tile (fresh megabyte-sized temporaries are faulted in
    page by page under distributed's ``MALLOC_TRIM_THRESHOLD_``).  The last tile is
    padded with zeros, which add nothing to G.
    """

    def __init__(self, blocks: list[npt.NDArray[np.uint8]]) -> None:
        self.rows = _values(blocks)
        self.n_frames = sum(rows.shape[0] for rows in self.rows)
        self.n_pixels = int(self.rows[0].shape[1])
        self.tile = _PRODUCTS_PER_TILE * EXACT_PIXELS
        self.buffer = np.zeros((_PRODUCTS_PER_TILE, self.n_frames, EXACT_PIXELS), dtype=np.float32)

    def load(self, start: int) -> npt.NDArray[np.float32]:
        """The tile of pixels from ``start``: (products, n, EXACT_PIXELS) float32."""
        stop = min(start + self.tile, self.n_pixels)
        width = stop - start
        full, rest = divmod(width, EXACT_PIXELS)
        first = 0
        for rows in self.rows:
            n = rows.shape[0]
            part = rows[:, start:stop]
            if full:
                whole = part[:, : full * EXACT_PIXELS].reshape(n, full, EXACT_PIXELS)
                np.copyto(self.buffer[:full, first : first + n], whole.transpose(1, 0, 2), casting="unsafe")
            if rest:
                self.buffer[full, first : first + n, :rest] = part[:, full * EXACT_PIXELS :]
                self.buffer[full, first : first + n, rest:] = 0.0
            first += n
        used = full + (1 if rest else 0)
        return self.buffer[:used]


def _gram_block(
    first: list[npt.NDArray[np.uint8]], second: list[npt.NDArray[np.uint8]] | None
) -> npt.NDArray[np.float64]:
    """M_a^T M_b for two groups of chunks (M_a^T M_a when ``second`` is None): exact, float64.

    Shape (n_a, n_b).  Each tile's products are exact integers in float32 (see
    :data:`EXACT_PIXELS`); their sum over the tile's products is exact in float64.
    """
    left = _ExactTiles(first)
    right = left if second is None else _ExactTiles(second)
    gram = np.zeros((left.n_frames, right.n_frames), dtype=np.float64)
    product = np.empty((_PRODUCTS_PER_TILE, left.n_frames, right.n_frames), dtype=np.float32)
    for start in range(0, left.n_pixels, left.tile):
        a = left.load(start)
        b = a if second is None else right.load(start)
        out = product[: a.shape[0]]
        np.matmul(a, b.transpose(0, 2, 1), out=out)
        gram += out.sum(axis=0, dtype=np.float64)
    return gram


def _solve(
    gram_blocks: list[npt.NDArray[np.float64]], pairs: list[tuple[int, int]], sizes: list[int], k: int
) -> npt.NDArray[np.float64]:
    """G's top k eigenpairs -> (T + 1, k) float64: V (signed) in rows 0..T-1, s in row T.

    Signs as :func:`dask.array.utils.svd_flip` chooses them: each column of V (row of
    Vt) sums to 0 or more.  Eigenvalues below ``_DROP_RATIO`` of the largest give s = 0
    and a zero column (a black video, fewer independent frames than k).
    """
    firsts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    n_frames = int(firsts[-1])
    gram = np.empty((n_frames, n_frames), dtype=np.float64)
    for (a, b), block in zip(pairs, gram_blocks, strict=True):
        rows, cols = slice(firsts[a], firsts[a + 1]), slice(firsts[b], firsts[b + 1])
        gram[rows, cols] = block
        gram[cols, rows] = block.T
    # only the top k eigenpairs (LAPACK's MRRR): a few times faster than all of them;
    # imported here, on the worker, not by every command that imports this module
    import scipy.linalg

    lam, vectors = scipy.linalg.eigh(gram, subset_by_index=[n_frames - k, n_frames - 1], driver="evr")
    lam, vectors = lam[::-1], vectors[:, ::-1]
    keep = lam > _DROP_RATIO * max(float(lam[0]), 0.0)
    signs = np.where(vectors.sum(axis=0) >= 0, 1.0, -1.0)
    solved = np.empty((n_frames + 1, k), dtype=np.float64)
    solved[:-1] = vectors * np.where(keep, signs, 0.0)
    solved[-1] = np.where(keep, np.sqrt(np.where(keep, lam, 1.0)), 0.0)
    return solved


def _lift_group(
    blocks: list[npt.NDArray[np.uint8]], solved: npt.NDArray[np.float64], first_frame: int
) -> npt.NDArray[np.float64]:
    """The group's share of U = M V diag(1/s): M_group V_group diag(1/s), (P, k) float64.

    In float64, a tile of pixels at a time (float32 would leave U orthonormal only to
    about 1e-7 s_1 / s_i).  Each tile is one (k, n) x (n, tile) product, written into
    U's rows transposed: BLAS runs that shape faster than the (tile, n) x (n, k) one for
    a handful of components, the values equal to float64 rounding (README, ``--method exact``).
    """
    singular = solved[-1]
    scale = np.divide(1.0, singular, out=np.zeros_like(singular), where=singular > 0)
    rows = _values(blocks)
    n_group = sum(values.shape[0] for values in rows)
    weights = solved[first_frame : first_frame + n_group] * scale  # (n, k)
    n_pixels = int(rows[0].shape[1])
    out = np.empty((n_pixels, solved.shape[1]), dtype=np.float64)
    tile = _PRODUCTS_PER_TILE * EXACT_PIXELS
    buffer = np.empty((n_group, tile), dtype=np.float64)
    product = np.empty((solved.shape[1], tile), dtype=np.float64)
    weights_t = np.ascontiguousarray(weights.T)
    for start in range(0, n_pixels, tile):
        stop = min(start + tile, n_pixels)
        stacked = buffer[:, : stop - start]
        first = 0
        for values in rows:
            np.copyto(stacked[first : first + values.shape[0]], values[:, start:stop], casting="unsafe")
            first += values.shape[0]
        np.matmul(weights_t, stacked, out=product[:, : stop - start])
        out[start:stop] = product[:, : stop - start].T
    return out


def _energies(
    diagonal_blocks: list[npt.NDArray[np.float64]], solved: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """trace(G) from the diagonal blocks of G, then s_i^2: (k + 1,) float64."""
    energies = np.empty(solved.shape[1] + 1, dtype=np.float64)
    energies[0] = sum(float(np.trace(block)) for block in diagonal_blocks)
    energies[1:] = solved[-1] ** 2
    return energies


def _singular_values(solved: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """The singular values (k,) float32 of :func:`_solve`'s result."""
    singular: npt.NDArray[np.float32] = solved[-1].astype(np.float32)
    return singular


def _right_vectors(solved: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """Vt (k, T) float32 of :func:`_solve`'s result."""
    return np.ascontiguousarray(solved[:-1].T, dtype=np.float32)
