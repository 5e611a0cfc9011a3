"""Truncated SVD of the video matrix M (pixel, frame): randomized or exact, lazy.

Every function here builds a dask graph and returns it; none reads data or computes.
Whatever scheduler runs the result (a distributed Client, or dask's threads) does the
work.

Accuracy of the randomized method's defaults, measured on the notebook's video
(bmc2012 Video_003, M of 76800 x 794, rank 10; worst of seeds 0-4; reference: numpy's
SVD in float64, optimal relative error 0.107053; the fused and QR iterations agree to
the digits shown where both were measured)::

    oversample  power_iters  reads (fused)  error / optimal  max rel. error of s
    10          1            3              1.0131           9.5e-2
    10          2            4              1.0031           3.2e-2
    10          3            5              1.00083          1.3e-2
    10          4            6              1.00023          4.4e-3
    10          6            8              1.000022         5.1e-4
    20          2            4              1.00057          6.7e-3
    20          3            5              1.000083         1.4e-3
    20          4            6              1.000012         2.5e-4
    30          2            4              1.00013          1.7e-3
    40          1            3              1.0013           1.1e-2
    40          2            4              1.000043         6.3e-4   <- default
    40          3            5              1.000002         3.6e-5

The target is an error within 1 % of optimal and singular values within 1e-3.  The
error is met from 2 iterations on; the singular values need 6 iterations with 10
oversamples, 4 with 20 and 2 with 40.  A read of the video is the cost that grows
with it, and at a fixed ``power_iters * columns`` the arithmetic is the same, so the
default takes the fewest reads that meet the target: ``power_iters + 2`` = 4 reads
with the fused iteration (``2 * power_iters + 2`` = 6 passes with the QR one), the
same flops as 4 iterations with 20 (6 reads), whose GEMMs with 50 columns also run
closer to the machine's rate than with 30.  On a second video (pets-campus, M of
172800 x 795) the default gives 1.00005 and 7.0e-4, 4 iterations with 20 gave
1.00001 and 2.4e-4.  Raise ``oversample`` for more margin: 50 gave 2.2e-4 there.
At rank 50 on Video_003 the default gives 1.0009 and 8.1e-3 (4 iterations with 20:
1.0003 and 5.5e-3): the spectrum is flat there, and no setting near these meets 1e-3.

References
----------
N. Halko, P. G. Martinsson and J. A. Tropp, "Finding structure with randomness:
probabilistic algorithms for constructing approximate matrix decompositions",
SIAM Review 53(2), 217-288, 2011.

A. Benson, D. Gleich and J. Demmel, "Direct QR factorizations for tall-and-skinny
matrices in MapReduce architectures", IEEE Big Data 2013.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

import dask.array as da
import numpy as np
from dask.array.linalg import compression_level, tsqr
from dask.array.utils import svd_flip

from pipelines.exact_memory import default_block_rows, estimate_exact_memory
from pipelines.graph_copy import fresh_copies, has_p2p_layers
from pipelines.units import format_bytes
from storage.errors import InvalidParameterError

__all__ = [
    "DEFAULT_OVERSAMPLE",
    "DEFAULT_POWER_ITERS",
    "Decomposition",
    "SvdParameters",
    "auto_iteration",
    "decompose",
    "default_block_rows",
    "estimate_exact_memory",
    "exact_svd",
    "randomized_svd",
    "singular_value_accuracy",
]

Method = Literal["auto", "randomized", "exact"]
METHODS: tuple[Method, ...] = ("auto", "randomized", "exact")

Iteration = Literal["auto", "fused", "qr"]
ITERATIONS: tuple[Iteration, ...] = ("auto", "fused", "qr")

DEFAULT_POWER_ITERS = 2
"""Power (subspace) iterations of the randomized SVD; see the module's table."""

DEFAULT_OVERSAMPLE = 40
"""Extra columns of the random sketch beyond the rank; see the module's table."""


@dataclass(frozen=True, kw_only=True)
class SvdParameters:
    """What to compute: the method, the rank and the randomized method's options.

    Attributes
    ----------
    method : {"auto", "randomized", "exact"}
        ``auto`` (default): the decompose step takes ``exact`` where the frames' Gram
        matrix is the cheaper (short videos, :func:`pipelines.gram_svd.choose_method`)
        and ``randomized`` otherwise, before anything is named or computed; the
        factors record the method taken.  Given a matrix (:func:`decompose`), ``auto``
        is ``randomized``.
        ``randomized``: Halko et al.'s randomized SVD with QR-orthonormalised power
        iterations, any chunking, ``2 * power_iters + 2`` passes over M.
        ``exact``: the thin SVD, exact to float32 rounding: here by TSQR, which needs
        memory for a float32 copy of M (see :func:`estimate_exact_memory`); the
        decompose step takes it from the frames' Gram matrix instead where
        :func:`pipelines.gram_svd.gram_fits` (two reads, no copy of M).
    rank : int
        Components kept, between 1 and min(P, T).
    power_iters : int
        Power iterations (randomized only); 0 is fast and inaccurate on video.
    oversample : int
        Sketch columns beyond ``rank`` (randomized only); the sketch has
        ``max(20, rank + oversample)`` columns, at most min(P, T).
    seed : int
        Seed of the random sketch (randomized only).  For a given seed and chunking
        of M the result is the same on every run.
    iteration : {"auto", "fused", "qr"}
        Randomized only: ``fused`` (:mod:`pipelines.fused_svd`, ``power_iters + 2``
        reads of the video) or ``qr`` (:func:`randomized_svd`, ``2 * power_iters +
        2``), same subspace; ``auto``: ``fused`` where the frames are at hand (see
        :func:`auto_iteration`), ``qr`` for a matrix held in memory (:func:`decompose`).
    """

    method: Method = "auto"
    rank: int
    power_iters: int = DEFAULT_POWER_ITERS
    oversample: int = DEFAULT_OVERSAMPLE
    seed: int = 0
    iteration: Iteration = "auto"

    @property
    def passes(self) -> int:
        """Reads of the video: 1 for ``exact`` (TSQR), else the randomized method's (the most)."""
        if self.method == "exact":
            return 1
        return self.power_iters + 2 if self.iteration == "fused" else 2 * self.power_iters + 2

    def validate(self, n_pixels: int, n_frames: int) -> None:
        """Check the parameters against the shape (P, T) of M.

        Raises
        ------
        InvalidParameterError
            Unknown method, rank outside [1, min(P, T)], negative power_iters or
            oversample, or a negative seed.
        """
        if self.method not in METHODS:
            raise InvalidParameterError(f"--method must be auto, randomized or exact, got {self.method!r}")
        limit = min(n_pixels, n_frames)
        if not 1 <= self.rank <= limit:
            raise InvalidParameterError(
                f"--rank must be between 1 and min(pixels, frames) = {limit}, got {self.rank}"
            )
        if self.power_iters < 0:
            raise InvalidParameterError(
                f"--power-iters must be 0 or more (default {DEFAULT_POWER_ITERS}), got {self.power_iters}"
            )
        if self.oversample < 0:
            raise InvalidParameterError(
                f"--oversample must be 0 or more (default {DEFAULT_OVERSAMPLE}), got {self.oversample}"
            )
        if self.seed < 0:
            raise InvalidParameterError(f"--seed must be 0 or more, got {self.seed}")
        if self.iteration not in ITERATIONS:
            raise InvalidParameterError(f"--iteration must be auto, fused or qr, got {self.iteration!r}")

    def as_attrs(self) -> dict[str, Any]:
        """The parameters as JSON-ready attributes (what factors record)."""
        return asdict(self)


class Decomposition(NamedTuple):
    """A rank-k truncated SVD ``M ~ U @ diag(s) @ Vt``; unpacks as ``U, s, Vt``.

    Attributes
    ----------
    U : dask.array.Array
        Shape (pixel, component) = (P, k), float32, orthonormal columns.
    s : dask.array.Array
        Shape (component,) = (k,), float32, decreasing.
    Vt : dask.array.Array
        Shape (component, frame) = (k, T), float32, orthonormal rows.
    """

    U: da.Array
    s: da.Array
    Vt: da.Array


def decompose(
    matrix: da.Array,
    params: SvdParameters,
    *,
    memory_limit_bytes: int | None = None,
    threads: int = 1,
    keep_in_memory: bool = False,
) -> Decomposition:
    """Truncated SVD of M with the method of ``params``; lazy.

    Parameters
    ----------
    matrix : dask.array.Array
        M, shape (P, T), float32 (see :func:`pipelines.matrix.video_matrix`).
    params : SvdParameters
        Method, rank and options; validated against M's shape.
    memory_limit_bytes : int, optional
        Memory the cluster can give the exact method; it is refused above that.
    threads : int
        Worker threads of the whole cluster (exact method's memory estimate).
    keep_in_memory : bool
        Randomized method only: see :func:`randomized_svd`.

    Returns
    -------
    Decomposition
        ``U`` (P, k), ``s`` (k,), ``Vt`` (k, T), float32, lazy.

    Raises
    ------
    InvalidParameterError
        Invalid parameters, or the exact method would need more than
        ``memory_limit_bytes``.
    """
    params.validate(*_shape(matrix))
    if params.method == "exact":
        return exact_svd(matrix, params, memory_limit_bytes=memory_limit_bytes, threads=threads)
    if params.iteration == "fused" or (params.iteration == "auto" and not keep_in_memory):
        raise InvalidParameterError("the fused iteration reads frames: call fused_svd.fused_randomized_svd")
    return randomized_svd(matrix, params, keep_in_memory=keep_in_memory)


def auto_iteration(*, params: SvdParameters) -> Iteration:
    """The iteration ``auto`` stands for when the frames are at hand: ``fused``.

    Both iterations do the same products; they differ in reads of the video (``qr``
    2q + 2, ``fused`` q + 2) and in how Q (P x l) is orthonormalised after each
    product (``qr``: dask's TSQR, 2q + 1 times; ``fused``: SVQB, q + 1 times, two
    (P x l) x (l x l) products per step, one step between power iterations and two
    for the last basis).  Out of core the reads decide.  With M held in
    memory reads are nearly free, and ``qr`` used to win for a small basis; since the
    fused passes multiply chunk by chunk it no longer does (``decompose --rank 10``
    on a running cluster, M in memory, medians of 4 alternating runs): the notebook's
    160x120 frames (P = 19,200, 6,806 frames), ``fused`` 1.72 s against ``qr`` 2.46 s;
    Video_003 at 320x240 (794 frames), 0.98 s against 1.97 s.  An iteration given
    explicitly is kept.
    """
    if params.method == "exact" or params.iteration != "auto":
        return params.iteration
    return "fused"


def randomized_svd(matrix: da.Array, params: SvdParameters, *, keep_in_memory: bool = False) -> Decomposition:
    """Randomized truncated SVD of M (Halko et al.), QR-orthonormalised; lazy.

    Parameters
    ----------
    matrix : dask.array.Array
        M, shape (P, T), float32, any chunks.
    params : SvdParameters
        ``rank``, ``power_iters``, ``oversample`` and ``seed`` are used.
    keep_in_memory : bool
        False (default): every pass over M reads it again from its source, so the
        computation holds only a few chunks of M at a time, whatever the video's
        length.  True: the graph of :func:`dask.array.linalg.svd_compressed` as is,
        which keeps every chunk of M in memory from the first pass to the last (a
        float32 copy of the video, four times its uint8 size, spilled to disk by
        distributed workers when it does not fit): faster when it fits.  Also what
        happens, with a RuntimeWarning, when M's graph holds a distributed P2P
        rechunk, which cannot be run once per pass.

    Returns
    -------
    Decomposition
        ``U`` (P, k), ``s`` (k,), ``Vt`` (k, T), float32, lazy; signs fixed by
        :func:`dask.array.utils.svd_flip`.  Deterministic for a seed and chunking of
        M, and identical whichever ``keep_in_memory``.

    Notes
    -----
    The algorithm is that of :func:`dask.array.linalg.svd_compressed` with
    ``iterator="QR"`` (its default ``"power"`` iterator does not re-orthonormalise and
    overflows float32 on video): a Gaussian sketch Omega (T, l) with ``l = max(20, k +
    oversample)``, ``Q = qr(M Omega)``, then ``power_iters`` times ``Q = qr(M qr(M^T
    Q))``, and the SVD of the small ``Q^T M``.  That is ``2 * power_iters + 2`` passes
    over M.  The only difference is that each pass gets its own copy of M's graph
    (new keys for the same tasks, as :func:`dask.graph_manipulation.clone` would
    make), so dask never holds M between passes.

    Memory: a few chunks of M per worker thread, plus the (P, l) and (T, l) float32
    sketches and their per-chunk partial products.
    """
    n_pixels, n_frames = _shape(matrix)
    params.validate(n_pixels, n_frames)
    k = params.rank
    if not keep_in_memory and has_p2p_layers(matrix):
        warnings.warn(
            "M's graph holds a distributed P2P rechunk, which cannot run once per pass: "
            "M is read once and held in memory until the last pass (keep_in_memory=True); "
            "build M on the video's own chunks to keep memory bounded",
            RuntimeWarning,
            stacklevel=2,
        )
        keep_in_memory = True
    if keep_in_memory:
        u, s, vt = da.linalg.svd_compressed(
            matrix,
            k=k,
            iterator="QR",
            n_power_iter=params.power_iters,
            n_oversamples=params.oversample,
            seed=params.seed,
            compute=False,
        )
        return Decomposition(u, s, vt)

    fresh = fresh_copies(matrix)
    width = compression_level(min(n_pixels, n_frames), k, n_oversamples=params.oversample)
    sketch_dtype = np.float32 if matrix.dtype == np.float32 else np.float64
    omega = (
        da.random.default_rng(params.seed)
        .standard_normal(size=(n_frames, width), chunks=(matrix.chunks[1], (width,)))
        .astype(sketch_dtype, copy=False)
    )
    basis, _ = tsqr(fresh().dot(omega))
    for _ in range(params.power_iters):
        basis, _ = tsqr(fresh().T.dot(basis))
        basis, _ = tsqr(fresh().dot(basis))
    compression = basis.T
    v_small, s, u_small = tsqr(compression.dot(fresh()).T, compute_svd=True)
    u = compression.T.dot(u_small.T)[:, :k]
    u, vt = svd_flip(u, v_small.T[:k, :])
    return Decomposition(u, s[:k], vt)


def exact_svd(
    matrix: da.Array,
    params: SvdParameters,
    *,
    memory_limit_bytes: int | None = None,
    block_rows: int | None = None,
    threads: int = 1,
) -> Decomposition:
    """Exact thin SVD of M by TSQR (:func:`dask.array.linalg.svd`), truncated; lazy.

    Parameters
    ----------
    matrix : dask.array.Array
        M, shape (P, T), float32.  TSQR needs the short side of M in one chunk; when
        it is not, M is rechunked into blocks of ``block_rows`` along the long side
        (dask picks distributed's P2P rechunk when a Client is current and M is large,
        its task rechunk otherwise).  Cheaper: build M in that layout from the uint8
        frames, ``video_matrix(frames, frames_per_chunk=T, image_rows_per_chunk=r)``.
    params : SvdParameters
        ``rank`` is used; the randomized options are ignored.
    memory_limit_bytes : int, optional
        Memory the cluster can give this computation (all workers together).  When
        :func:`estimate_exact_memory` exceeds it the method is refused before anything
        runs.  None: no check.
    block_rows : int, optional
        Rows (along the long side) per block when M has to be rechunked; by default
        :func:`default_block_rows`.  Ignored when M already has its short side in one
        chunk and blocks at least twice as tall as that side is long: its own blocks
        are used then.
    threads : int
        Worker threads of the whole cluster, for the memory estimate.

    Returns
    -------
    Decomposition
        ``U`` (P, k), ``s`` (k,), ``Vt`` (k, T), float32, lazy; signs fixed by
        :func:`dask.array.utils.svd_flip`.

    Raises
    ------
    InvalidParameterError
        Invalid rank, or the estimate exceeds ``memory_limit_bytes`` (the message
        names ``--method randomized``).

    Notes
    -----
    When frames outnumber pixels (T > P: short, wide M) the TSQR runs on M^T and the
    factors are swapped back; the long side then runs along frames.

    Memory: see :func:`estimate_exact_memory`: a float32 copy of M (the Q factors of
    the first TSQR stage) held until the end, ``2 * n_blocks`` matrices of ``n x n``
    for the short side n, and about eight float32 blocks per running block QR (numpy
    factors float32 in float64).  Time: on the notebook's video (76800 x 794) with two
    threads it took 10 to 25 s, the randomized default 1 to 3 s.
    """
    n_pixels, n_frames = _shape(matrix)
    params.validate(n_pixels, n_frames)
    long_axis = 0 if n_pixels >= n_frames else 1
    short_axis = 1 - long_axis
    if block_rows is not None and block_rows < 1:
        raise InvalidParameterError(f"block_rows must be a positive integer, got {block_rows}")
    long_side, short_side = max(n_pixels, n_frames), min(n_pixels, n_frames)
    tallest = max(matrix.chunks[long_axis], default=0)
    if matrix.numblocks[short_axis] == 1 and tallest >= min(2 * short_side, long_side):
        rows = tallest
    else:
        rows = block_rows or default_block_rows(n_pixels, n_frames)
        matrix = matrix.rechunk({long_axis: rows, short_axis: -1})
    if memory_limit_bytes is not None:
        needed = estimate_exact_memory(n_pixels, n_frames, block_rows=rows, threads=threads)
        if needed > memory_limit_bytes:
            raise InvalidParameterError(
                f"the exact SVD of {n_pixels} pixels x {n_frames} frames needs about "
                f"{format_bytes(needed)} but {format_bytes(memory_limit_bytes)} is available; "
                "use --method randomized (or a bigger cluster)"
            )
    u, s, vt = da.linalg.svd(matrix, coerce_signs=True)
    k = params.rank
    return Decomposition(u[:, :k], s[:k], vt[:k, :])


def singular_value_accuracy(s: Any, reference: Any) -> Any:
    """Largest relative difference ``max |s_i - ref_i| / ref_i`` over the common components.

    Parameters
    ----------
    s, reference : array_like or dask.array.Array
        Singular values, shapes (k,) and (k',); the first ``min(k, k')`` are compared.

    Returns
    -------
    float or dask.array.Array
        A float for numpy inputs, a lazy 0-d array when either input is a dask array.
    """
    n = min(int(np.shape(s)[0]), int(np.shape(reference)[0]))
    lazy = isinstance(s, da.Array) or isinstance(reference, da.Array)
    xp: Any = da if lazy else np
    ours = xp.asarray(s)[:n].astype(np.float64)
    theirs = xp.asarray(reference)[:n].astype(np.float64)
    safe = xp.where(theirs != 0, xp.abs(theirs), 1.0)
    result = xp.max(xp.abs(ours - theirs) / safe)
    return result if lazy else float(result)


def _shape(matrix: da.Array) -> tuple[int, int]:
    if not isinstance(matrix, da.Array) or matrix.ndim != 2:
        raise InvalidParameterError(
            "the SVD needs the (pixel, frame) matrix as a 2-d dask array, got "
            f"{type(matrix).__name__} of shape {getattr(matrix, 'shape', '?')}; "
            "build it with video_matrix(frames)"
        )
    return int(matrix.shape[0]), int(matrix.shape[1])
