"""Passes over the frames a group of chunks per task, partials summed in a tree.

The pass machinery the fused SVD (:mod:`pipelines.fused_svd`) and the background
models' counts (:mod:`pipelines.background_models`) share.  A pass that reduces the
whole video to one array (a (P, l) product, (P, 16) counts) makes one partial of that
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

__all__ = ["SPLIT_EVERY", "chain_groups", "checked_count", "chunk_groups", "sum_partials"]

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
    first), which it may add into in place, being its only consumer.  Returns the
    chains' last partials, in order, to sum with :func:`sum_partials`.  ``None`` (or
    1): a chain per task, every partial fresh.

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
    level = partials
    while len(level) > 1:
        level = [
            dask.delayed(add, pure=True)(*level[start : start + SPLIT_EVERY])
            for start in range(0, len(level), SPLIT_EVERY)
        ]
    return da.from_delayed(level[0], shape=shape, dtype=np.dtype(dtype))


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
            "result was lost or added twice (a worker failure?); nothing was written, run the command again"
        )
    rows: npt.NDArray[Any] = total[:-1]
    return rows


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
