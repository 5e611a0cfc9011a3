"""Randomized SVD with fused power iterations, straight from the uint8 frames; lazy.

The randomized SVD of :mod:`pipelines.decompose` (dask's ``iterator="QR"``) reads M
twice per power iteration: once for ``M^T Q``, once for ``M (M^T Q)``.  With M in
column blocks M_j (the frames of one chunk), one read of a block serves both::

    Z_j = M_j^T Q          (f_j x l)
    Y  += M_j Z_j          (P x l)

so a power iteration ``Y = M M^T Q`` is one pass, and ``Q = qr(Y)`` is taken once
per pass.  With the sketch ``Y = M Omega`` first and ``B^T = M^T Q`` last, the
algorithm reads the video ``power_iters + 2`` times instead of ``2 power_iters + 2``,
and spans the same subspace ``(M M^T)^q M Omega`` as the QR iterator in exact
arithmetic.  In floating point the T-side basis is not re-orthonormalised between
the two products, so directions whose squared singular value ratio to the first falls
below float32's resolution are lost within a pass: each pass's basis holds them at
``(s_i / s_1)^4`` of the first, and below about ``s_i / s_1 = 5e-4`` they come back
as zero columns with s_i = 0 (the decompose step warns, naming the exact method,
which resolves them).  Video spectra at the ranks used here usually sit far above
that; a bright, nearly still scene may not.  The accuracy contract (error within 1 %
of optimal, singular values within 1e-3) is checked by the tests and the bench.

The kernels read uint8 frames and convert them to float32 a tile of pixels at a time
(a tile of ``n x tile`` values, a few MB), so no float32 copy of a chunk is ever
made: the memory traffic of a pass is the uint8 read plus the products.

Communication per pass on a cluster: Q (P x l float32) to every worker holding
frames, one (P x l) partial per group of chunks summed by a binary tree of tasks
(at most one transfer per sum), then Y orthonormalised in one task.  At 1280x720 and
l = 50 that is 184 MB per partial.  The reads of a pass wait for the previous pass's
basis (:func:`pipelines.graph_copy.copy_graph`), so they cannot pile up in memory
while it is orthonormalised.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import dask
import dask.array as da
import dask.system
import numpy as np
import numpy.typing as npt
from dask.array.linalg import compression_level

from pipelines.chunk_groups import (
    chain_groups,
    chain_partial,
    checked_count,
    chunk_groups,
    sum_counted_partials,
)
from pipelines.decompose import Decomposition, SvdParameters
from pipelines.graph_copy import fresh_copies
from storage.errors import InvalidParameterError

__all__ = ["TILE_BYTES", "fused_randomized_svd", "svqb_transform"]

TILE_BYTES: Final = 2**22
"""float32 bytes of one converted tile of a group (frames x pixels): a few MB, cache-sized.

At 1 MiB a group of 288 frames of 720p got tiles of 910 pixels, and ``M_group Z``
(tile x 288 by 288 x 50, added into Y) ran at 42 GFLOP/s on one core against 58 at
2,048 pixels or more; ``M_group^T Q`` is the same from 455 to 8,192 pixels (measured).
4 MiB made the 3,000-frame 720p decompose 4 % faster (two alternating rounds)."""


def fused_randomized_svd(
    frames: da.Array,
    params: SvdParameters,
    *,
    keep_in_memory: bool = False,
    frames_per_task: int | None = None,
    groups_per_chain: int | None = None,
) -> Decomposition:
    """Randomized truncated SVD of M = the frames as columns, with fused passes; lazy.

    Parameters
    ----------
    frames : dask.array.Array
        Shape (T, y, x) or (T, y, x, 3), uint8 as stored (or float32, e.g. a
        persisted float copy that saves the conversion on every pass), whole frames
        per chunk.  Column t of M is frame t flattened, P = y x [x 3] pixels.
    params : SvdParameters
        ``rank``, ``power_iters``, ``oversample`` and ``seed`` are used.
    keep_in_memory : bool
        False: every pass reads the frames again from their source (a fresh copy of
        their graph per pass).  True: one graph, so dask holds the frames between
        passes (persist them first on a cluster).
    frames_per_task : int, optional
        Consecutive chunks are grouped so that one task of a pass takes at least
        this many frames: the sketch and the power iterations multiply them, a tile
        of pixels of all their frames at a time, into one (P, l) partial (fewer
        partials to add, and no copy to merge chunks: the task holds the group's
        uint8 chunks, its inputs), and the last pass returns their rows of M^T Q in
        one block.  None: one chunk per task.
    groups_per_chain : int, optional
        The sketch's and the power iterations' group tasks run in chains of this many
        consecutive groups (:func:`pipelines.chunk_groups.chain_groups`), each adding
        into its chain's (P, l) partial: that many times fewer partials per pass to
        allocate and sum.  None: a partial per group.

    Returns
    -------
    Decomposition
        U (P, k), s (k,), Vt (k, T), float32, lazy, signs as
        :func:`dask.array.utils.svd_flip` fixes them (each row of Vt sums to 0 or
        more); deterministic for a seed and chunking.
        The sketch Omega is the one :func:`pipelines.decompose.randomized_svd` draws
        for the same seed and chunking.

    Notes
    -----
    ``power_iters + 2`` reads of the video.  Per pass: ``4 P T l`` flops (2 for the
    sketch and the last pass) and the orthonormalisation of Y in one task (``4 P l^2``
    flops per SVQB step: one step between power iterations, two for the last basis).
    After the last pass, the SVD of B^T (T, l) from its float64 Gram matrix
    (``2 T l^2`` flops, an (l + 1, l) partial per group).  Memory per task: the
    group's uint8 chunks (converted a tile at a time), one (P, l) float32 partial and
    Q; :data:`pipelines.chunk_groups.SPLIT_EVERY` partials per summing task.
    """
    if frames.dtype not in (np.uint8, np.float32) or not (frames.ndim == 3 or frames.shape[-1:] == (3,)):
        raise InvalidParameterError(
            "fused_randomized_svd needs uint8 (or float32) frames (T, y, x[, 3]),"
            f" got {frames.dtype} {frames.shape}"
        )
    if any(len(chunks) != 1 for chunks in frames.chunks[1:]):
        frames = frames.rechunk({axis: -1 for axis in range(1, frames.ndim)})
    n_frames = int(frames.shape[0])
    n_pixels = int(np.prod(frames.shape[1:], dtype=np.int64))
    params.validate(n_pixels, n_frames)
    width = compression_level(min(n_pixels, n_frames), params.rank, n_oversamples=params.oversample)
    # one graph (dask keeps the frames between passes), or a fresh copy per pass
    read: Callable[..., da.Array] = (lambda *, after=None: frames) if keep_in_memory else fresh_copies(frames)
    omega = (
        da.random.default_rng(params.seed)
        .standard_normal(size=(n_frames, width), chunks=(frames.chunks[0], (width,)))
        .astype(np.float32, copy=False)
    )
    groups = chunk_groups(frames.chunks[0], frames_per_task=frames_per_task)
    blocks = list(read().to_delayed().ravel())
    omegas = list(omega.to_delayed().ravel())
    sketched = chain_groups(
        _sketch_group,
        [([blocks[i] for i in group], [omegas[i] for i in group]) for group in groups],
        per_chain=groups_per_chain,
    )
    # partials carry a count row (frames added): a sum that is not every frame once is refused
    basis = _orthonormal(
        sum_counted_partials(sketched, shape=(n_pixels + 1, width), dtype=np.float32),
        steps=1 if params.power_iters else 2,
        n_frames=n_frames,
    )
    for iteration in range(params.power_iters):
        blocks = list(read(after=basis).to_delayed().ravel())
        q = basis.to_delayed().ravel()[0]
        powered = chain_groups(
            _power_group, [([blocks[i] for i in group], q) for group in groups], per_chain=groups_per_chain
        )
        basis = _orthonormal(
            sum_counted_partials(powered, shape=(n_pixels + 1, width), dtype=np.float32),
            steps=2 if iteration == params.power_iters - 1 else 1,
            n_frames=n_frames,
        )
    # B^T = M^T Q, (T, l), a task per group of chunks (faster GEMMs than chunk by chunk);
    # not a blockwise contraction, which copied each chunk and Q (6 % of the worker time)
    q = basis.to_delayed().ravel()[0]
    blocks = list(read(after=basis).to_delayed().ravel())
    projected = [dask.delayed(_project_group, pure=True)([blocks[i] for i in group], q) for group in groups]
    # the SVD of B^T from its (l, l) Gram matrix: four levels of tasks from the last
    # pass to the factors, where dask's TSQR and svd_flip took about fifteen levels of
    # tiny tasks, each waiting on the scheduler (figures in the README)
    stats = sum_counted_partials(
        [dask.delayed(_projection_stats, pure=True)(part) for part in projected],
        shape=(width + 2, width), dtype=np.float64,
    )  # fmt: skip
    k = params.rank
    # unoptimised: optimising the sum's graph alone would fuse each projection into its
    # Gram task under a new key, and Vt's blocks would compute the projections again
    small = dask.delayed(_small_svd, pure=True)(
        stats.to_delayed(optimize_graph=False).ravel()[0], k, n_frames
    )
    u = da.from_delayed(
        dask.delayed(_lift, pure=True)(q, small),
        shape=(n_pixels, k), dtype=np.float32, meta=np.empty((0, 0), np.float32),
    )  # fmt: skip
    s = da.from_delayed(
        dask.delayed(_singular_values, pure=True)(small),
        shape=(k,), dtype=np.float32, meta=np.empty((0,), np.float32),
    )  # fmt: skip
    vt = da.concatenate(
        [
            da.from_delayed(
                dask.delayed(_right_vectors, pure=True)(part, small),
                shape=(k, sum(frames.chunks[0][i] for i in group)),
                dtype=np.float32, meta=np.empty((0, 0), np.float32),
            )
            for part, group in zip(projected, groups, strict=True)
        ],
        axis=1,
    )  # fmt: skip
    return Decomposition(u, s, vt)


def _projection_stats(projected: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """(l + 2, l) float64 of a block of B^T (n, l): its Gram matrix, its column sums, then n (a count row)."""
    as_float64 = projected.astype(np.float64)
    stats = np.empty((projected.shape[1] + 2, projected.shape[1]), dtype=np.float64)
    np.matmul(as_float64.T, as_float64, out=stats[:-2])
    stats[-2] = as_float64.sum(axis=0)
    stats[-1] = projected.shape[0]
    return stats


def _small_svd(stats: npt.NDArray[np.float64], k: int, n_frames: int) -> npt.NDArray[np.float64]:
    """The SVD of B^T from its Gram matrix G = B B^T and column sums: (l + 1, k) float64.

    G = W diag(s^2) W^T (eigh, largest first), so B^T = V diag(s) W^T with
    V = B^T W diag(1/s).  Rows 0..l-1 hold W[:, :k] and row l holds s[:k].  Signs as
    :func:`dask.array.utils.svd_flip` chooses them from V: each column of V is flipped
    so that its sum, ``(column sums of B^T) W diag(1/s)``, is not negative.  Directions
    with s^2 below ``_DROP_RATIO`` of the largest (a black video, fewer independent
    frames than k) get s = 0 and a zero column of V and U instead of a division by 0.
    """
    counted = checked_count(stats, expected=n_frames, what="last pass's Gram matrices")
    gram, sums = counted[:-1], counted[-1]
    lam, vectors, keep = _eigen_descending(gram)
    lam, vectors, keep = lam[:k], vectors[:, :k], keep[:k]
    singular = np.where(keep, np.sqrt(np.where(keep, lam, 1.0)), 0.0)
    signs = np.where(sums @ vectors >= 0, 1.0, -1.0)  # the sign of V's column sums (s > 0)
    small = np.empty((gram.shape[0] + 1, k), dtype=np.float64)
    small[:-1] = vectors * np.where(keep, signs, 0.0)
    small[-1] = singular
    return small


def _singular_values(small: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """s[:k] of :func:`_small_svd`'s result, (k,) float32."""
    singular: npt.NDArray[np.float32] = small[-1].astype(np.float32)
    return singular


def _right_vectors(
    projected: npt.NDArray[np.float32], small: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """Vt's columns for a block of B^T (n, l): (W diag(1/s))^T B_block, (k, n) float32.

    In float64 (``2 n l k`` flops): in float32 the product's rounding, scaled by s_1 / s_i,
    left Vt's rows orthogonal only to 1e-5 where s_1 / s_4 was 477 (1e-7 in float64).
    """
    singular = small[-1]
    scale = np.divide(1.0, singular, out=np.zeros_like(singular), where=singular > 0)
    vectors = projected.astype(np.float64) @ (small[:-1] * scale)
    return np.ascontiguousarray(vectors.T, dtype=np.float32)


def _lift(basis: npt.NDArray[np.float32], small: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """U = Q W[:, :k]: Q (P, l) times the signed eigenvectors of :func:`_small_svd`, (P, k) float32."""
    lifted: npt.NDArray[np.float32] = np.matmul(basis, small[:-1].astype(np.float32))
    return lifted


def _orthonormal(y: da.Array, *, steps: int, n_frames: int) -> da.Array:
    """An orthonormal basis of the columns of y (P, l), float32, one chunk; lazy.

    ``steps`` SVQB steps (Stathopoulos and Wu 2002): G = Y^T Y in float64,
    G = V diag(lam) V^T, Y <- Y V diag(lam)^-1/2.  One task, its :data:`_BANDS` bands
    of rows in threads (the cluster has nothing else to do meanwhile): G in float64 a
    tile of rows at a time (no float64 copy of Y), Y times the (l, l) transform in
    float32, as Y is stored; two (P, l) x (l, l) products per step, where Householder
    QR of the same tall matrix runs at a small fraction of the GEMM rate.  Applying the
    transform in float64 took twice as long for the same float32 basis.  This task is
    the step between passes that nothing overlaps.  One step leaves an orthogonality
    error of about cond(Y)^2 * 1e-16 plus float32 rounding times cond(Y); a second
    removes it down to float32 rounding (6e-8 at 921,600 x 50).  Only the basis the
    last pass projects on must be orthonormal to that level (U = Q W): a basis the
    next power iteration multiplies needs only to keep its directions apart, and one
    step does that, so :func:`fused_randomized_svd` takes two steps for the last basis
    and one for the others (the same errors and singular values to the digits of
    :mod:`pipelines.decompose`'s table on Video_003 and pets-campus, seeds 0-4).
    Directions with lam below ``_DROP_RATIO * max(lam)`` (noise, or a video with fewer
    than l independent frames) become zero columns instead of being amplified.
    """
    return y.map_blocks(
        _svqb,
        steps=steps,
        n_frames=n_frames,
        chunks=((y.shape[0] - 1,), (y.shape[1],)),
        dtype=np.float32,
        meta=np.empty((0, 0), np.float32),
    )


_DROP_RATIO: Final = 1e-13
"""Eigenvalues of the Gram matrix below this share of the largest are dropped."""

_ROW_TILE: Final = 2**14
"""Rows of Y per tile of the orthonormalisation (a few MB in float64 at l = 30)."""

_BANDS: Final = 4
"""Bands of rows of Y orthonormalised in parallel threads; fixed, so that the Gram
matrix is summed in the same order on every machine (results do not depend on cores)."""


def _svqb(y: npt.NDArray[np.float32], *, steps: int, n_frames: int) -> npt.NDArray[np.float32]:
    """Y orthonormalised by ``steps`` SVQB steps, in place; Y arrives with its count row (checked, dropped).

    Y is the sum of the pass's partials, which this task alone consumes; it is copied
    first only when it arrived read-only or is not float32 C-contiguous.
    """
    y = checked_count(y, expected=n_frames, what="pass's products")
    q = y if _writable_float32(y) else np.array(y, dtype=np.float32, order="C", copy=True)
    bands = _row_bands(q.shape[0])
    threads = max(1, min(len(bands), dask.system.CPU_COUNT))
    # the whole cluster waits for this task between passes: its row bands run on the
    # cores, numpy releasing the GIL; the bands, hence the sums, do not depend on them
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in range(steps):
            _svqb_step(q, bands=bands, pool=pool)
    return q


def _writable_float32(array: npt.NDArray[Any]) -> bool:
    return bool(array.dtype == np.float32 and array.flags.writeable and array.flags.c_contiguous)


def _svqb_step(q: npt.NDArray[np.float32], *, bands: list[slice], pool: ThreadPoolExecutor) -> None:
    """One SVQB step in place: its Gram matrix, then its rotation, a band of rows per thread.

    The rotation goes through a scratch tile per band, not a new (P, l) array: a fresh
    184 MB array at 720p is memory the worker touches for the first time, and the
    first orthonormalisation of a decompose took 0.93-1.10 s with two of them against
    0.36-0.44 s in place (a fresh process, 921,600 x 50, measured).
    """
    gram = np.zeros((q.shape[1], q.shape[1]), dtype=np.float64)
    for band_gram in pool.map(_gram_in_float64, [q[band] for band in bands]):
        gram += band_gram
    # the Gram matrix in float64, its application in float32, as q is stored: the
    # second step removes what the first one's rounding leaves (see _orthonormal)
    transform = svqb_transform(gram).astype(np.float32)
    for _ in pool.map(_rotate_in_place, [q[band] for band in bands], itertools.repeat(transform)):
        pass


def _rotate_in_place(rows: npt.NDArray[np.float32], transform: npt.NDArray[np.float32]) -> None:
    """Replace rows by rows @ transform, a tile of :data:`_ROW_TILE` rows at a time through one scratch."""
    scratch = np.empty((min(_ROW_TILE, rows.shape[0]), transform.shape[1]), dtype=np.float32)
    for start in range(0, rows.shape[0], _ROW_TILE):
        part = rows[start : start + _ROW_TILE]
        rotated = scratch[: part.shape[0]]
        np.matmul(part, transform, out=rotated)
        part[...] = rotated


def _row_bands(n_rows: int) -> list[slice]:
    """:data:`_BANDS` slices of about equal rows (fewer for fewer rows than bands)."""
    edges = np.linspace(0, n_rows, min(_BANDS, max(n_rows, 1)) + 1).astype(np.int64)
    return [slice(int(start), int(stop)) for start, stop in itertools.pairwise(edges)]


def _gram_in_float64(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """rows^T rows (l, l) in float64, a tile of rows at a time: no float64 copy of rows."""
    width = rows.shape[1]
    # one float64 tile, reused: a fresh one per tile costs a page fault per page where
    # distributed's workers set MALLOC_TRIM_THRESHOLD_ (3-4x slower, measured)
    tile = np.empty((min(_ROW_TILE, rows.shape[0]), width), dtype=np.float64)
    tile_gram = np.empty((width, width), dtype=np.float64)
    gram = np.zeros((width, width), dtype=np.float64)
    for start in range(0, rows.shape[0], _ROW_TILE):
        part = tile[: min(_ROW_TILE, rows.shape[0] - start)]
        np.copyto(part, rows[start : start + part.shape[0]])
        np.matmul(part.T, part, out=tile_gram)
        gram += tile_gram
    return gram


def svqb_transform(gram: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """V diag(lam)^-1/2 of a Gram matrix Y^T Y (l, l): Y times it is orthonormal.

    Columns for directions with lam below ``_DROP_RATIO * max(lam)`` are zero;
    columns are ordered by decreasing lam.
    """
    lam, vectors, keep = _eigen_descending(gram)  # largest first, as QR orders a well-conditioned sketch
    scale = np.zeros_like(lam)
    scale[keep] = 1.0 / np.sqrt(lam[keep])
    return np.asarray(vectors * scale)


def _eigen_descending(
    gram: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Eigenvalues and eigenvectors (columns) of a Gram matrix, largest first, and which to keep.

    Kept: eigenvalues above ``_DROP_RATIO`` of the largest.
    """
    lam, vectors = np.linalg.eigh(gram)
    order = np.argsort(lam)[::-1]
    lam, vectors = lam[order], vectors[:, order]
    return lam, vectors, lam > _DROP_RATIO * max(float(lam[0]), 0.0)


def _tile_pixels(n_frames: int) -> int:
    """Pixels per tile: ``TILE_BYTES`` of float32 over ``n_frames`` frames, at least 256."""
    return max(256, TILE_BYTES // (4 * max(n_frames, 1)))


def _columns(block: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """(n, y, x[, c]) -> (n, P): row t is frame t flattened (M_j^T), a view."""
    return block.reshape(block.shape[0], -1)


class _Tiles:
    """Tiles of pixels of a group of chunks, stacked: float32 (n_total, tile) views.

    The group's chunks M_j^T (n_j, P) are read a tile of pixels at a time into one
    buffer of all their frames, so that each tile is one GEMM with the group's
    n_total frames and each tile of a (P, l) result is written once per group.
    Multiplying chunk by chunk instead reads and writes the whole (P, l) result once
    per chunk: 220 MB of memory traffic per chunk of 720p at l = 30, which made the
    out-of-core pass 2.5x slower than its arithmetic (measured).  The buffers are
    made once: distributed's workers set ``MALLOC_TRIM_THRESHOLD_``, under which
    every fresh megabyte-sized temporary is mapped and faulted in anew (the kernels
    ran 3-4x slower, measured).
    """

    def __init__(self, blocks: list[npt.NDArray[Any]], *, width: int) -> None:
        self.rows: list[npt.NDArray[Any]] = [_columns(block) for block in blocks]
        self.n_frames = sum(rows.shape[0] for rows in self.rows)
        self.n_pixels = self.rows[0].shape[1]
        self.tile = _tile_pixels(self.n_frames)
        self.buffer = np.empty((self.n_frames, self.tile), dtype=np.float32)
        self.product = np.empty((self.tile, width), dtype=np.float32)

    def __iter__(self) -> Iterator[tuple[int, int, npt.NDArray[np.float32]]]:
        for start in range(0, self.n_pixels, self.tile):
            stop = min(start + self.tile, self.n_pixels)
            if len(self.rows) == 1 and self.rows[0].dtype == np.float32:
                as_stored: npt.NDArray[np.float32] = self.rows[0][:, start:stop]
                yield start, stop, as_stored
                continue
            stacked = self.buffer[:, : stop - start]
            first = 0
            for rows in self.rows:
                np.copyto(stacked[first : first + rows.shape[0]], rows[:, start:stop], casting="unsafe")
                first += rows.shape[0]
            yield start, stop, stacked

    def accumulate(self, right: npt.NDArray[np.float32], out: npt.NDArray[np.float32]) -> None:
        """Out += M_group right: (n_total, l) -> into (P, l), one GEMM per tile."""
        for start, stop, stacked in self:
            product = self.product[: stop - start]
            np.matmul(stacked.T, right, out=product)
            np.add(out[start:stop], product, out=out[start:stop])

    def project(self, basis: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """M_group^T Q: (P, l) -> (n_total, l) float32."""
        out = np.zeros((self.n_frames, basis.shape[1]), dtype=np.float32)
        partial = np.empty_like(out)
        for start, stop, stacked in self:
            np.matmul(stacked, basis[start:stop], out=partial)
            out += partial
        return out


def _sketch_group(
    blocks: list[npt.NDArray[Any]],
    omegas: list[npt.NDArray[np.float32]],
    into: npt.NDArray[np.float32] | None,
) -> npt.NDArray[np.float32]:
    """Sum over the group's chunks of M_j Omega_j, added into ``into``: (P, l) float32."""
    tiles = _Tiles(blocks, width=omegas[0].shape[1])
    out, count = chain_partial(into, shape=(tiles.n_pixels + 1, omegas[0].shape[1]))
    tiles.accumulate(np.concatenate(omegas, axis=0).astype(np.float32, copy=False), out[:-1])
    out[-1] = count + tiles.n_frames  # the count row, last
    return out


def _power_group(
    blocks: list[npt.NDArray[Any]], basis: npt.NDArray[np.float32], into: npt.NDArray[np.float32] | None
) -> npt.NDArray[np.float32]:
    """Sum over the group's chunks of M_j (M_j^T Q), added into ``into``: (P, l) float32, two sweeps."""
    tiles = _Tiles(blocks, width=basis.shape[1])
    out, count = chain_partial(into, shape=(basis.shape[0] + 1, basis.shape[1]))
    tiles.accumulate(tiles.project(basis), out[:-1])
    out[-1] = count + tiles.n_frames  # the count row, last
    return out


def _project_group(blocks: list[npt.NDArray[Any]], basis: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """M_group^T Q: the group's chunks (n_j, y, x[, c]) and (P, l) -> (sum n_j, l) float32."""
    return _Tiles(blocks, width=basis.shape[1]).project(basis)
