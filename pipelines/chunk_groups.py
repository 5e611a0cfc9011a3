"""Passes over the frames a group of chunks per task, partials summed in a tree.

The pass machinery the fused SVD (:mod:`pipelines.fused_svd`) and the background
models' counts (:mod:`pipelines.median_counts`) share.  A pass that reduces the
whole video to one array (a (P, l) product, (16, P) counts) makes one partial of that
size per task.  With one stored chunk per task a 1280x720 video in 36-frame chunks
makes a 59-184 MB partial per 36 frames, and adding and moving them costs more than
the pass's own arithmetic; a task that takes a group of consecutive chunks and adds
their products into one partial makes fewer, without a copy to merge the chunks.  The
task holds its group's chunks, which its inputs are, so a group's size is bounded as
merged chunks are (:func:`pipelines.planning.merged_frames_per_chunk`): groups of
1,500 frames of 720p, tried to bound the tree's depth, raised the peak of a 12,000-frame
decompose from 3.7 to 6.1 GiB.

:func:`chunk_groups` plans the groups (pure); :func:`sum_partials` adds the groups'
partials by a binary tree of tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import dask
import dask.array as da
import numpy as np
import numpy.typing as npt
from dask.delayed import Delayed

from storage.errors import InconsistentResultError

__all__ = [
    "SPLIT_EVERY",
    "chain_groups",
    "chain_partial",
    "checked_count",
    "chunk_groups",
    "open_count_row",
    "sum_counted_partials",
    "sum_partials",
]

SPLIT_EVERY: Final = 2
"""Partials summed per task of the tree: a sum runs as soon as two partials exist.
With 8, up to 9 partials (184 MB each at 720p and l = 50) waited in one worker for
their sum (measured), most of the fused SVD's out-of-core peak memory."""


def chunk_groups(frame_chunks: tuple[int, ...], *, frames_per_task: int | None) -> list[list[int]]:
    """Consecutive chunk indices in groups of at least ``frames_per_task`` frames.

    The last group may hold fewer; one chunk per group when ``frames_per_task`` is None.
    """
    groups: list[list[int]] = [[]]
    held = 0
    for index, size in enumerate(frame_chunks):
        if groups[-1] and (frames_per_task is None or held >= frames_per_task):
            groups.append([])
            held = 0
        groups[-1].append(index)
        held += size
    return groups


def chain_groups(
    kernel: Callable[..., Any], arguments: list[tuple[Any, ...]], *, per_chain: int | None
) -> list[Delayed]:
    """Tasks ``kernel(*arguments[i], into)`` in chains of ``per_chain`` consecutive tasks.

    Each task is given its chain's partial so far as ``into`` (None for a chain's
    first), which it may add into in place, being its only consumer (see
    :func:`chain_partial`).  Returns the chains' last partials, in order, to sum with
    :func:`sum_partials` or :func:`sum_counted_partials`.  ``None`` (or 1): a chain
    per task, every partial fresh.

    Notes
    -----
    A pass of G groups makes ceil(G / ``per_chain``) partials to allocate and add
    instead of G.  Chains of consecutive groups run one after the other as the tree
    of single partials did: a chain that spanned the pass (group i in chain i % n)
    held its partial for the whole pass, and its groups' chunks, read ahead while the
    chain's earlier tasks ran, piled up (the peak of a 12,000-frame 720p decompose
    rose from 2.84 to 3.04 GiB with four such chains and to 4.01 GiB with two,
    measured).  The order of the sums depends only on the groups.
    """
    length = max(1, per_chain or 1)
    ends: list[Delayed] = []
    for start in range(0, len(arguments), length):
        partial: Delayed | None = None
        for group_arguments in arguments[start : start + length]:
            partial = dask.delayed(kernel, pure=True)(*group_arguments, partial)
        assert partial is not None  # a chain holds at least one task
        ends.append(partial)
    return ends


def chain_partial(
    into: npt.NDArray[np.float32] | None, *, shape: tuple[int, ...]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """A chain's float32 partial to add into (zeros of ``shape`` for a chain's first task), and its count.

    ``into`` is the chain's previous task's result, which the calling task alone
    consumes (:func:`chain_groups`): it is added into in place (a copy only when it
    arrived read-only, deserialised from another worker's bytes), its count row (the
    last) NaN until the caller writes the new count, last (:func:`open_count_row`).
    """
    out = np.zeros(shape, dtype=np.float32) if into is None else into
    out = out if out.flags.writeable else np.array(out, dtype=np.float32, copy=True)
    return out, open_count_row(out)


def sum_partials(
    partials: list[Delayed], *, shape: tuple[int, ...], dtype: npt.DTypeLike, in_place: bool = False
) -> da.Array:
    """The groups' partials -> their sum, a dask array of one chunk of ``shape`` and ``dtype``.

    A tree of tasks adding :data:`SPLIT_EVERY` partials each into the first (a copy of
    it unless ``in_place``): no concatenation of the partials (dask's ``sum`` would
    stack them first).  Memory per task: :data:`SPLIT_EVERY` partials and, without
    ``in_place``, their sum.

    ``in_place``: the partials are results of tasks made for this sum alone, which
    adds into them; one that arrives read-only (deserialised from another worker's
    bytes) is still copied.  A copy is fresh memory, faulted in page by page (at
    720p and l = 50, 184 MB per pass before its orthonormalisation).
    """
    add = _add_into_first_in_place if in_place else _add_into_first
    return _summed_by(add, partials, shape=shape, dtype=dtype)


def sum_counted_partials(
    partials: list[Delayed], *, shape: tuple[int, ...], dtype: npt.DTypeLike
) -> da.Array:
    """:func:`sum_partials` in place, of float partials whose last row counts their frames.

    Each summing task adds the partials' rows into the first's and writes the sum of
    their count rows last, the first's count row held at NaN meanwhile
    (:func:`open_count_row`): a copy of it taken while it is being added into cannot
    pass :func:`checked_count`.  Memory per task: :data:`SPLIT_EVERY` partials.
    """
    return _summed_by(_add_counted_into_first, partials, shape=shape, dtype=dtype)


def open_count_row(partial: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    """A copy of ``partial``'s count row (its last), which is set to NaN: call before adding into it.

    Adding into a task's input in place is safe while that task runs once and alone
    consumes it.  After a worker failure dask.distributed may cancel a running task
    (it cannot stop its thread) and run it again, possibly on another worker that
    copies the input from this one while the first run is still adding into it.  The
    count row is written last, so such a copy shows either the old count with
    nothing added (rows are copied in order, the count row last), or NaN, or the new
    count, which the second run's addition doubles: :func:`checked_count` refuses the
    last two, and a second run on an input the first run finished adding into.
    Write ``count + frames added`` into the row once the rows are added.
    """
    count: npt.NDArray[np.floating] = partial[-1].copy()
    partial[-1] = np.nan
    return count


def checked_count(total: npt.NDArray[Any], *, expected: int, what: str) -> npt.NDArray[Any]:
    """The rows of a summed partial above its count row, once the count row says ``expected``.

    Partials added into in place carry, in a last row, the number of frames added into
    them (every entry).  Their sum must hold every frame once: a partial lost, or added
    twice (a task run again on an input it had already added into, as after a worker
    failure), would leave a wrong sum that nothing else notices.

    Parameters
    ----------
    total : ndarray
        Shape (n + 1, ...): the sum, its last row the count.
    expected : int
        Frames the sum must hold (exact in float32 up to 2^24).
    what : str
        What was summed, for the error.

    Returns
    -------
    ndarray
        ``total[:-1]``, a view (C-contiguous and writable when ``total`` is).

    Raises
    ------
    InconsistentResultError
        The count row is not ``expected`` everywhere.
    """
    counted = total[-1]
    if not np.all(counted == expected):
        raise InconsistentResultError(
            f"the {what} added up {float(np.max(counted)):g} frames instead of {expected}: a partial "
            "result was lost, added twice or copied while being added into (a worker failure?); "
            "nothing was written, run the command again"
        )
    rows: npt.NDArray[Any] = total[:-1]
    return rows


def _summed_by(
    add: Callable[..., Any], partials: list[Delayed], *, shape: tuple[int, ...], dtype: npt.DTypeLike
) -> da.Array:
    """A binary tree of ``add`` tasks over ``partials``: their sum, one chunk."""
    level = partials
    while len(level) > 1:
        level = [
            dask.delayed(add, pure=True)(*level[start : start + SPLIT_EVERY])
            for start in range(0, len(level), SPLIT_EVERY)
        ]
    return da.from_delayed(level[0], shape=shape, dtype=np.dtype(dtype))


def _add_counted_into_first(*partials: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
    first = partials[0]
    if not (first.flags.writeable and first.flags.c_contiguous):
        first = np.array(first, copy=True)
    count = open_count_row(first)
    for partial in partials[1:]:
        np.add(first[:-1], partial[:-1], out=first[:-1])
        count += partial[-1]  # NaN in any makes the sum NaN
    first[-1] = count
    return first


def _add_into_first_in_place(*partials: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    first = partials[0]
    if not (first.flags.writeable and first.flags.c_contiguous):
        return _add_into_first(*partials)
    for partial in partials[1:]:
        np.add(first, partial, out=first)
    return first


def _add_into_first(*partials: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    total = np.array(partials[0], copy=True)
    for partial in partials[1:]:
        np.add(total, partial, out=total)
    return total
