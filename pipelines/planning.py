"""Pure planners: how to lay out and run a decomposition on a cluster of a given size.

Arithmetic on shapes, chunk sizes and cluster sizes only: no dask graph is built,
no store is opened, no cluster is contacted, so every rule has unit tests of its own.
The decompose step measures the cluster, asks :func:`plan_decomposition`, and wires
the answer into the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.units import format_bytes
from storage.errors import InvalidParameterError

__all__ = [
    "GROUPS_PER_CHAIN",
    "KEEP_IN_MEMORY_SHARE",
    "MAX_MERGED_CHUNK_BYTES",
    "ClusterSize",
    "DecompositionPlan",
    "chain_length",
    "keeps_in_memory",
    "merged_chunk_limit",
    "merged_frames_per_chunk",
    "plan_decomposition",
]

MAX_MERGED_CHUNK_BYTES = 1 << 30
"""Largest chunk of M (float32) that merging video chunks may make."""

KEEP_IN_MEMORY_SHARE = 0.25
"""The stored uint8 video is held in worker memory between passes over it (the SVD's
and every later step's of one command) when M, its float32 matrix, is at most this
share of the cluster's memory.  Holding it avoids reading the store at each pass
(2.4x faster on the notebook's 0.5 GB matrix); above this share the workers would
spill, so each pass reads the store again."""

GROUPS_PER_CHAIN = 3
"""Consecutive groups of a fused SVD pass that add into one partial
(:func:`pipelines.chunk_groups.chain_groups`).  On the 3,000-frame 720p store (12
groups per pass, two threads) four partials per pass instead of twelve took the
decompose from 29.2 and 28.9 s to 26.9 and 26.7 s (alternating rounds, measured).
Three keeps a chain's partial, and the chunks read ahead for its next groups, alive
for three groups' time, not the whole pass."""

_MERGED_SHARE_OF_WORKER = 8
"""A merged chunk of M takes at most 1/8 of a worker's memory: a task holds it, its
uint8 source and its (P, l) product, and each worker runs several tasks."""


@dataclass(frozen=True, kw_only=True)
class ClusterSize:
    """What the planner needs to know of a cluster.

    Attributes
    ----------
    n_workers : int
        Worker processes.
    threads : int
        Threads of all workers together.
    worker_memory_bytes : int
        Memory limit of one worker; 0 when the workers have none.
    """

    n_workers: int
    threads: int
    worker_memory_bytes: int

    @property
    def memory_bytes(self) -> int | None:
        """Memory of all workers together, None when unlimited."""
        return self.worker_memory_bytes * self.n_workers if self.worker_memory_bytes > 0 else None


@dataclass(frozen=True, kw_only=True)
class DecompositionPlan:
    """How the decompose step lays out M and runs the SVD.

    Attributes
    ----------
    frames_per_chunk : int or None
        Frames per chunk of M (neighbouring video chunks merged), None to keep one
        video chunk per chunk of M.
    keep_in_memory : bool
        Keep M in worker memory between the passes of the randomized method.
    cluster_memory_bytes : int or None
        Memory of the whole cluster (for the exact method's refusal), None when
        unlimited.
    groups_per_chain : int
        Consecutive groups of a fused SVD pass adding into one (P, l) partial
        (:func:`pipelines.chunk_groups.chain_groups`): :func:`chain_length`.
    """

    frames_per_chunk: int | None
    keep_in_memory: bool
    cluster_memory_bytes: int | None
    groups_per_chain: int


def keeps_in_memory(*, matrix_bytes: int, cluster: ClusterSize) -> bool:
    """Whether the stored video is held in worker memory between passes over it.

    Parameters
    ----------
    matrix_bytes : int
        Bytes of M as float32 (four times the uint8 video's).
    cluster : ClusterSize
        The cluster that computes.

    Returns
    -------
    bool
        True when M is at most :data:`KEEP_IN_MEMORY_SHARE` of the cluster's memory.
        What is held is the uint8 video, a quarter of M: at most 1/16 of the memory.
        A cluster without memory limits holds nothing (its size is unknown).
    """
    total = cluster.memory_bytes
    return total is not None and matrix_bytes <= KEEP_IN_MEMORY_SHARE * total


def merged_frames_per_chunk(
    *,
    video_chunk_frames: int,
    n_video_chunks: int,
    frame_pixels: int,
    min_chunks: int,
    max_chunk_bytes: int = MAX_MERGED_CHUNK_BYTES,
) -> int | None:
    """Frames per chunk of M for the randomized SVD: whole video chunks merged.

    Parameters
    ----------
    video_chunk_frames : int
        Frames per stored video chunk.
    n_video_chunks : int
        Stored chunks along frames.
    frame_pixels : int
        Values per frame (P, times 3 for colour).
    min_chunks : int
        Keep at least this many chunks of M (e.g. twice the cluster's threads), so
        every thread has work in each pass.
    max_chunk_bytes : int
        Largest chunk of M as float32.

    Returns
    -------
    int or None
        A multiple of ``video_chunk_frames`` to pass to
        :func:`pipelines.matrix.video_matrix` as ``frames_per_chunk``, or None when
        merging would not help (one video chunk per chunk of M).

    Notes
    -----
    Thin chunks make ``M @ Q`` slow: each chunk of n frames yields a full (P, l)
    partial product, so a 1280x720 video in 36-frame chunks writes and sums a
    110 MB partial per 36 frames; merging 7 video chunks cut the default randomized
    SVD of 1200 such frames 2.7-fold (README, sizing).  Merging is a concatenation of
    neighbouring chunks inside each task: every stored chunk is still read once per
    pass.  Memory per task: one merged uint8 chunk, its float32 copy (at most
    ``max_chunk_bytes``) and its (P, l) product.
    """
    if video_chunk_frames < 1 or n_video_chunks < 2 * max(min_chunks, 1):
        return None
    frame_bytes = frame_pixels * np.dtype(np.float32).itemsize
    by_bytes = max_chunk_bytes // max(video_chunk_frames * frame_bytes, 1)
    by_count = n_video_chunks // max(min_chunks, 1)
    merge = min(by_bytes, by_count)
    return video_chunk_frames * merge if merge >= 2 else None


def merged_chunk_limit(worker_memory_bytes: int) -> int:
    """Largest merged chunk (float32 bytes): 1 GiB, and 1/8 of a worker's memory limit (0: none)."""
    if worker_memory_bytes > 0:
        return min(MAX_MERGED_CHUNK_BYTES, worker_memory_bytes // _MERGED_SHARE_OF_WORKER)
    return MAX_MERGED_CHUNK_BYTES


def plan_decomposition(
    *,
    method: str,
    video_chunk_frames: int,
    n_video_chunks: int,
    frame_pixels: int,
    matrix_chunk_bytes: int,
    matrix_bytes: int,
    cluster: ClusterSize,
) -> DecompositionPlan:
    """Choose the chunk merging and caching of a decomposition, or refuse it.

    Parameters
    ----------
    method : {"randomized", "exact"}
        Only the randomized method merges chunks and keeps M in memory.
    video_chunk_frames, n_video_chunks : int
        Frames per stored video chunk, and how many chunks there are.
    frame_pixels : int
        Values per frame (P, times 3 for colour).
    matrix_chunk_bytes : int
        Bytes of the largest chunk of M as float32 before merging.
    matrix_bytes : int
        Bytes of M as float32.
    cluster : ClusterSize
        The cluster that will compute.

    Returns
    -------
    DecompositionPlan

    Raises
    ------
    InvalidParameterError
        A worker's memory cannot hold one chunk of M twice (its uint8 source is
        converted into it).

    Notes
    -----
    Merged chunks of M are at most 1 GiB and 1/8 of a worker's memory, and there are
    at least two per thread, so every thread has work in each pass.
    """
    limit = cluster.worker_memory_bytes
    if limit > 0 and matrix_chunk_bytes * 2 > limit:
        raise InvalidParameterError(
            f"a worker's memory limit ({format_bytes(limit)}) cannot hold one chunk of M "
            f"({format_bytes(matrix_chunk_bytes)} as float32, twice that while it is converted); "
            "raise --memory-limit or re-ingest with a smaller --chunk-frames"
        )
    merged = None
    if method == "randomized":
        merged = merged_frames_per_chunk(
            video_chunk_frames=video_chunk_frames,
            n_video_chunks=n_video_chunks,
            frame_pixels=frame_pixels,
            min_chunks=2 * max(cluster.threads, 1),
            max_chunk_bytes=merged_chunk_limit(limit),
        )
    total = cluster.memory_bytes
    keep = keeps_in_memory(matrix_bytes=matrix_bytes, cluster=cluster)
    chunks_per_group = 1 if merged is None else -(-merged // max(video_chunk_frames, 1))
    n_groups = -(-n_video_chunks // chunks_per_group)
    return DecompositionPlan(
        frames_per_chunk=merged,
        keep_in_memory=keep,
        cluster_memory_bytes=total,
        groups_per_chain=chain_length(n_groups=n_groups, threads=cluster.threads),
    )


def chain_length(*, n_groups: int, threads: int) -> int:
    """Groups per chain of a fused SVD pass: the longest up to :data:`GROUPS_PER_CHAIN` that idles no thread.

    Chains run whole on one thread, in order, each on the first thread free.  Of the
    lengths 1 to :data:`GROUPS_PER_CHAIN`, the one whose pass ends first (in group
    times) wins, the longest on a tie (fewer partials to allocate and sum).  The
    notebook's store (4 groups, 2 threads) ran a chain of 3 beside a chain of 1, one
    thread idle for a third of each pass; chains of 2 balance it.  With three or
    more groups per thread the length stays 3.  Cost: ``GROUPS_PER_CHAIN * n_groups``
    steps of a loop over the threads, at planning time.
    """
    threads = max(threads, 1)

    def pass_time(length: int) -> int:
        free_at = [0] * threads
        for start in range(0, n_groups, length):
            first_free = free_at.index(min(free_at))
            free_at[first_free] += min(length, n_groups - start)
        return max(free_at)

    return min(range(GROUPS_PER_CHAIN, 0, -1), key=pass_time)
