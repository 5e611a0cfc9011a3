"""The pure planner of a decomposition: chunk merging, caching and the memory refusal."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipelines.planning import (
    GROUPS_PER_CHAIN,
    KEEP_IN_MEMORY_SHARE,
    ClusterSize,
    chain_length,
    keeps_in_memory,
    merged_frames_per_chunk,
    plan_decomposition,
)
from storage.errors import InvalidParameterError

FRAME_PIXELS = 72 * 128
FRAME_BYTES = FRAME_PIXELS * 4


def _merged(n_frames: int, chunk: int, *, min_chunks: int, max_bytes: int) -> int | None:
    return merged_frames_per_chunk(
        video_chunk_frames=chunk,
        n_video_chunks=-(-n_frames // chunk),
        frame_pixels=FRAME_PIXELS,
        min_chunks=min_chunks,
        max_chunk_bytes=max_bytes,
    )


def test_merged_chunks_are_whole_video_chunks_within_the_byte_cap() -> None:
    assert _merged(1200, 36, min_chunks=4, max_bytes=252 * FRAME_BYTES) == 252  # 7 chunks: the cap
    assert _merged(1200, 36, min_chunks=4, max_bytes=10**12) == 8 * 36  # at least 4 chunks remain


@pytest.mark.parametrize(
    ("n_frames", "chunk", "min_chunks", "max_bytes"),
    [
        (6806, 1747, 4, 10**12),  # the notebook's matrix: 4 chunks for 2 threads, no merge
        (100, 100, 1, 10**12),  # one chunk
        (1200, 36, 4, 36 * FRAME_BYTES),  # the cap allows one chunk only
        (1200, 36, 20, 10**12),  # 34 chunks cannot give 20 of two each
    ],
)
def test_no_merge_when_it_cannot_help(n_frames: int, chunk: int, min_chunks: int, max_bytes: int) -> None:
    assert _merged(n_frames, chunk, min_chunks=min_chunks, max_bytes=max_bytes) is None


def _plan(method: str = "randomized", *, worker_memory: int, workers: int = 2, threads: int = 2):  # type: ignore[no-untyped-def]
    return plan_decomposition(
        method=method,
        video_chunk_frames=36,
        n_video_chunks=34,
        frame_pixels=FRAME_PIXELS,
        matrix_chunk_bytes=36 * FRAME_BYTES,
        matrix_bytes=1200 * FRAME_BYTES,
        cluster=ClusterSize(n_workers=workers, threads=threads, worker_memory_bytes=worker_memory),
    )


def test_a_worker_that_cannot_hold_a_chunk_twice_is_refused_with_the_fix() -> None:
    with pytest.raises(InvalidParameterError, match=r"raise --memory-limit or re-ingest with a smaller"):
        _plan(worker_memory=36 * FRAME_BYTES * 2 - 1)
    _plan(worker_memory=36 * FRAME_BYTES * 2)  # exactly twice fits


def test_m_is_kept_in_memory_only_when_it_is_a_small_share_of_the_cluster() -> None:
    matrix_bytes = 1200 * FRAME_BYTES
    just_enough = int(matrix_bytes / KEEP_IN_MEMORY_SHARE / 2) + 1  # per worker, two workers
    assert _plan(worker_memory=just_enough).keep_in_memory
    assert not _plan(worker_memory=just_enough // 2).keep_in_memory
    two = ClusterSize(n_workers=2, threads=4, worker_memory_bytes=just_enough)
    assert keeps_in_memory(matrix_bytes=matrix_bytes, cluster=two)  # the rule the plan and the job share
    assert not keeps_in_memory(
        matrix_bytes=matrix_bytes + 1, cluster=replace(two, worker_memory_bytes=just_enough // 2)
    )
    unlimited = _plan(worker_memory=0)
    assert not unlimited.keep_in_memory and unlimited.cluster_memory_bytes is None


def test_only_the_randomized_method_merges_and_merges_fit_an_eighth_of_a_worker() -> None:
    roomy = 10**12
    assert _plan(worker_memory=roomy).frames_per_chunk == 8 * 36  # 34 chunks, >= 4 chunks left
    assert _plan("exact", worker_memory=roomy).frames_per_chunk is None
    tight = 8 * 72 * FRAME_BYTES  # an eighth of it holds two video chunks
    assert _plan(worker_memory=tight).frames_per_chunk == 72


@pytest.mark.parametrize(
    ("n_groups", "threads", "expected"),
    [(12, 2, 3), (34, 1, 3), (4, 2, 2), (5, 2, 3), (10, 4, 3), (4, 4, 1), (3, 8, 1), (1, 1, 3), (12, 64, 1)],
)
def test_chains_are_the_longest_up_to_three_groups_that_end_the_pass_soonest(
    n_groups: int, threads: int, expected: int
) -> None:
    assert GROUPS_PER_CHAIN == 3
    assert chain_length(n_groups=n_groups, threads=threads) == expected


def test_the_plan_chains_its_groups_for_the_cluster_threads() -> None:
    # 34 chunks of 36 frames, at least two groups per thread: 2 groups of 17 chunks
    # for one thread, 5 of 8 for two, one chunk each (34) for 64
    assert _plan(worker_memory=0, threads=1).groups_per_chain == 3
    assert _plan(worker_memory=0, threads=2).groups_per_chain == 3
    assert _plan(worker_memory=0, threads=64).groups_per_chain == 1


def test_format_bytes() -> None:
    from pipelines.units import format_bytes

    assert format_bytes(32 * 2**20) == "32 MiB"
    assert format_bytes(1536 * 2**20) == "1.5 GiB"
    assert format_bytes(512) == "512 B"
