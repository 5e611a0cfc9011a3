"""Memory and block plan of the exact (TSQR) SVD of M: pure arithmetic, no dask.

:func:`pipelines.decompose.exact_svd` refuses a matrix whose estimate exceeds the
memory available, and blocks M along its long side with :func:`default_block_rows`.
"""

from __future__ import annotations

import math

__all__ = ["EXACT_BLOCK_BYTES", "default_block_rows", "estimate_exact_memory"]

EXACT_BLOCK_BYTES = 64 * 2**20
"""Target size of one float32 block of M for the exact (TSQR) SVD."""

_FLOAT32_BYTES = 4


def default_block_rows(
    n_pixels: int,
    n_frames: int,
    *,
    block_bytes: int = EXACT_BLOCK_BYTES,
    multiple_of: int = 1,
) -> int:
    """Rows per TSQR block of M along its long side m: about ``block_bytes`` of float32.

    Parameters
    ----------
    n_pixels, n_frames : int
        Shape (P, T) of M.
    block_bytes : int
        Target float32 bytes of one block (64 MiB).
    multiple_of : int
        Round up to a multiple of this (the image width, to build M with
        ``video_matrix(..., image_rows_per_chunk=rows // width)``).

    Returns
    -------
    int
        At least twice the short side n, so that TSQR can reduce its stacked R
        factors in a tree (below that, one task factors all ``n_blocks * n`` rows of
        them at once; see :func:`estimate_exact_memory`), and at most about m.
    """
    long_side, short_side = max(n_pixels, n_frames), min(n_pixels, n_frames)
    rows = max(2 * short_side, block_bytes // (_FLOAT32_BYTES * max(short_side, 1)))
    rows = max(1, min(rows, long_side))
    step = max(1, multiple_of)
    return int(-(-rows // step) * step)


def estimate_exact_memory(n_pixels: int, n_frames: int, *, block_rows: int, threads: int = 1) -> int:
    """Estimate the peak memory, in bytes, of the exact SVD of M (all workers together).

    Parameters
    ----------
    n_pixels, n_frames : int
        Shape (P, T) of M.
    block_rows : int
        Rows per TSQR block along the long side m = max(P, T).
    threads : int
        Worker threads of the whole cluster (blocks factored at the same time).

    Returns
    -------
    int
        ``4 * (held + working)`` bytes, with n = min(P, T), b = ceil(m / block_rows)
        blocks, ``held = m*n + 2*b*n**2`` and ``working = max(8*threads*block_rows*n,
        8*stacked*n, 18*n**2)``, where ``stacked = block_rows`` when ``block_rows >=
        2n`` and ``b*n`` otherwise.

    Notes
    -----
    TSQR factors every block of M, ``A_i = Q_i R_i``.  The Q_i, together a float32
    copy of M (``m*n``), are held until the end, when each is multiplied by its share
    of the small factors; the ``b`` R factors (``n x n`` each, and as much again for
    their stacked copies) are held until they are factored in turn.  numpy factors
    float32 in float64, so a QR of a block of r rows takes about ``8 * r * n`` float32
    sizes while it runs (measured: 535 MiB for a 66 MiB block), and the final SVD of
    an ``n x n`` R about ``18 * n**2`` (602 MiB for n = 3000).  The stacked R factors
    are factored ``block_rows`` rows at a time when ``block_rows >= 2n``, all ``b * n``
    rows in one task otherwise.

    Measured with dask's threads on 76800 pixels (peak RSS / this estimate): 794
    frames, 4 blocks, 1 and 2 threads: 870 / 800 MiB and 1242 / 1340 MiB; 3000 frames,
    13 blocks of 6080 rows, 1 and 2 threads: 2663 / 2460 MiB and 2979 / 3020 MiB; the
    same with 14 blocks of 5760 rows (fewer than 2n): 5390 / 5960 MiB.
    """
    long_side, short_side = max(n_pixels, n_frames), min(n_pixels, n_frames)
    rows = max(1, min(block_rows, long_side))
    n_blocks = math.ceil(long_side / rows)
    stacked = rows if (rows >= 2 * short_side or n_blocks == 1) else n_blocks * short_side
    held = long_side * short_side + 2 * n_blocks * short_side**2
    working = max(8 * max(1, threads) * rows * short_side, 8 * stacked * short_side, 18 * short_side**2)
    return int((held + working) * _FLOAT32_BYTES)
