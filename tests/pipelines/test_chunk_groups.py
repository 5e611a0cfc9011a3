"""Groups of chunks per task and the tree that sums their partials."""

from __future__ import annotations

from collections.abc import Callable

import dask
import numpy as np
import pytest

from pipelines.chunk_groups import (
    chain_groups,
    chain_partial,
    checked_count,
    chunk_groups,
    open_count_row,
    sum_counted_partials,
    sum_partials,
)
from storage.errors import InconsistentResultError


@pytest.mark.parametrize(
    ("chunks", "per_task", "expected"),
    [
        ((36, 36, 36, 36, 12), None, [[0], [1], [2], [3], [4]]),
        ((36, 36, 36, 36, 12), 72, [[0, 1], [2, 3], [4]]),
        ((36, 36, 36, 36, 12), 100, [[0, 1, 2], [3, 4]]),
        ((10,), 1000, [[0]]),
        ((5, 5, 5), 1, [[0], [1], [2]]),
    ],
)
def test_groups_are_consecutive_chunks_of_at_least_the_frames_asked(
    chunks: tuple[int, ...], per_task: int | None, expected: list[list[int]]
) -> None:
    assert chunk_groups(chunks, frames_per_task=per_task) == expected


@pytest.mark.parametrize("count", [1, 2, 5, 8])
def test_sum_partials_adds_every_partial_once_and_keeps_the_dtype(count: int) -> None:
    parts = [np.full((3, 4), i + 1, dtype=np.uint32) for i in range(count)]
    inputs = [dask.delayed(part) for part in parts]
    total = sum_partials(inputs, shape=(3, 4), dtype=np.uint32)
    assert total.shape == (3, 4) and total.dtype == np.uint32
    computed = total.compute()
    np.testing.assert_array_equal(computed, np.full((3, 4), count * (count + 1) // 2))
    assert computed.dtype == np.uint32
    np.testing.assert_array_equal(parts[0], np.ones((3, 4)))  # the first partial is not added into


def _fresh(value: int) -> np.ndarray:
    return np.full((3, 4), value, dtype=np.uint32)


def _read_only(value: int) -> np.ndarray:
    array = _fresh(value)
    array.flags.writeable = False
    return array


@pytest.mark.parametrize("count", [1, 2, 5, 8])
@pytest.mark.parametrize("make", [_fresh, _read_only])
def test_sum_partials_in_place_adds_into_task_results_and_copies_read_only_ones(
    count: int, make: Callable[[int], np.ndarray]
) -> None:
    inputs = [dask.delayed(make, pure=True)(i + 1) for i in range(count)]
    total = sum_partials(inputs, shape=(3, 4), dtype=np.uint32, in_place=True)
    computed = total.compute(scheduler="sync")
    np.testing.assert_array_equal(computed, np.full((3, 4), count * (count + 1) // 2))
    assert computed.dtype == np.uint32


def _add_group(values: list[int], into: np.ndarray | None) -> np.ndarray:
    total = np.zeros((2, 3), dtype=np.int64) if into is None else into
    for value in values:
        total += value
    return total


@pytest.mark.parametrize(
    ("per_chain", "sums"),
    [(None, [3, 3, 9, 6, 7]), (1, [3, 3, 9, 6, 7]), (2, [6, 15, 7]), (3, [15, 13]), (9, [28])],
)
def test_chains_of_consecutive_groups_add_every_group_once(per_chain: int | None, sums: list[int]) -> None:
    groups = [[1, 2], [3], [4, 5], [6], [7]]
    chained = chain_groups(_add_group, [(group,) for group in groups], per_chain=per_chain)
    assert [int(end.compute(scheduler="sync")[0, 0]) for end in chained] == sums
    total = sum_partials(chained, shape=(2, 3), dtype=np.int64).compute(scheduler="sync")
    np.testing.assert_array_equal(total, np.full((2, 3), 28))


def _counted_partial(frames: int, value: float) -> np.ndarray:
    """A (3 + 1, 2) partial: a product of ``frames`` frames, then its count row."""
    partial = np.full((4, 2), value, dtype=np.float32)
    partial[-1] = frames
    return partial


def test_a_count_row_that_holds_every_frame_once_is_dropped() -> None:
    parts = [dask.delayed(_counted_partial)(n, float(n)) for n in (3, 4, 5)]
    total = sum_partials(parts, shape=(4, 2), dtype=np.float32, in_place=True).compute()
    rows = checked_count(total, expected=12, what="test products")
    np.testing.assert_array_equal(rows, np.full((3, 2), 12.0, np.float32))
    assert rows.flags.c_contiguous and rows.flags.writeable


@pytest.mark.parametrize("frames", [[3, 4], [3, 4, 5, 5]], ids=["lost", "added twice"])
def test_a_partial_lost_or_added_twice_is_refused(frames: list[int]) -> None:
    parts = [dask.delayed(_counted_partial)(n, float(n)) for n in frames]
    total = sum_partials(parts, shape=(4, 2), dtype=np.float32).compute()
    with pytest.raises(InconsistentResultError, match=r"test products added up .* instead of 12"):
        checked_count(total, expected=12, what="test products")


def test_counted_partials_add_their_rows_and_their_counts() -> None:
    parts = [dask.delayed(_counted_partial)(n, float(n)) for n in (3, 4, 5)]
    total = sum_counted_partials(parts, shape=(4, 2), dtype=np.float32).compute(scheduler="sync")
    np.testing.assert_array_equal(
        checked_count(total, expected=12, what="test products"), np.full((3, 2), 12.0)
    )


def test_a_counted_partial_copied_while_being_added_into_is_refused() -> None:
    # a task cancelled after a worker failure still runs; meanwhile its second run, on
    # another worker, copies the input the first run is adding into
    first_run_input = _counted_partial(3, 3.0)
    count = open_count_row(first_run_input)
    copied = first_run_input.copy()  # what the other worker reads: the count row is NaN
    first_run_input[:-1] += 4.0
    first_run_input[-1] = count + 4
    second_run, second_count = chain_partial(copied, shape=(4, 2))
    second_run[:-1] += 4.0
    second_run[-1] = second_count + 4
    with pytest.raises(InconsistentResultError, match="added up nan frames instead of 7"):
        checked_count(second_run, expected=7, what="test products")
    # a copy taken once the first run had finished counts its frames twice
    second_run, second_count = chain_partial(first_run_input.copy(), shape=(4, 2))
    second_run[-1] = second_count + 4
    with pytest.raises(InconsistentResultError, match="added up 11 frames instead of 7"):
        checked_count(second_run, expected=7, what="test products")


def test_a_chain_partial_starts_at_zero_and_copies_what_it_may_not_write() -> None:
    fresh, count = chain_partial(None, shape=(4, 2))
    assert not fresh[:-1].any() and np.isnan(fresh[-1]).all()  # zeros; the count row NaN until written
    np.testing.assert_array_equal(count, np.zeros(2))
    read_only = _counted_partial(3, 1.0)
    read_only.flags.writeable = False
    written, count = chain_partial(read_only, shape=(4, 2))
    assert written is not read_only and np.isnan(written[-1]).all()
    np.testing.assert_array_equal(read_only[-1], [3.0, 3.0])  # the input is untouched
    np.testing.assert_array_equal(count, [3.0, 3.0])
    a_count_poisoned = [dask.delayed(_counted_partial)(3, 1.0), dask.delayed(lambda: written)()]
    total = sum_counted_partials(a_count_poisoned, shape=(4, 2), dtype=np.float32).compute(scheduler="sync")
    assert np.isnan(total[-1]).all()  # NaN in any count makes the sum's NaN
