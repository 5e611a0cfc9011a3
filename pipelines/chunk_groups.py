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

__all__ = ["SPLIT_EVERY", "chain_groups", "chunk_groups", "sum_partials"]

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
    kernel: Callable[..., Any], arguments: list[tuple[Any, ...]], *, chains: int | None
) -> list[Delayed]:
    """Tasks ``kernel(*arguments[i], into)`` in ``chains`` chains, each adding into its chain's partial.

    Task i (a group's arguments) joins chain ``i % chains`` and is given the chain's
    partial so far as ``into`` (None for the first), which it may add into in place,
    being its only consumer.  Returns the chains' last partials, to sum with
    :func:`sum_partials`.  ``None`` (or more chains than tasks): a chain per task,
    every partial fresh.

    Notes
    -----
    A pass of G groups makes ``chains`` partials to allocate and add instead of G;
    with two chains per thread every thread still has a chain to run while another
    waits for its chunks.  The order of the sums, hence the rounding, depends on
    ``chains``: record it with the result.
    """
    n_chains = len(arguments) if chains is None else max(1, min(chains, len(arguments)))
    ends: list[Delayed | None] = [None] * n_chains
    for index, group_arguments in enumerate(arguments):
        ends[index % n_chains] = dask.delayed(kernel, pure=True)(*group_arguments, ends[index % n_chains])
    return [end for end in ends if end is not None]


def sum_partials(partials: list[Delayed], *, shape: tuple[int, ...], dtype: npt.DTypeLike) -> da.Array:
    """The groups' partials -> their sum, a dask array of one chunk of ``shape`` and ``dtype``.

    A tree of tasks adding :data:`SPLIT_EVERY` partials each into a copy of the first:
    no concatenation of the partials (dask's ``sum`` would stack them first).  Memory
    per task: :data:`SPLIT_EVERY` partials and their sum.
    """
    level = partials
    while len(level) > 1:
        level = [
            dask.delayed(_add_into_first, pure=True)(*level[start : start + SPLIT_EVERY])
            for start in range(0, len(level), SPLIT_EVERY)
        ]
    return da.from_delayed(level[0], shape=shape, dtype=np.dtype(dtype))


def _add_into_first(*partials: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    total = np.array(partials[0], copy=True)
    for partial in partials[1:]:
        np.add(total, partial, out=total)
    return total
