"""Exact per-pixel medians from counts: windows, coarse and fine bins, divided frames."""

from __future__ import annotations

from collections import Counter

import dask
import dask.array as da
import numpy as np
import pytest

from pipelines.background_models import sample_plate
from pipelines.frame_gains import frame_gains, normalized_frames
from pipelines.median_counts import (
    VALUE_COUNT_PIXELS,
    WINDOW_VALUES,
    coarse_counts,
    fine_counts,
    median_bin,
    median_from_counts,
    median_in_windows,
    median_of_values,
    pixel_columns,
    value_counts,
    window_counts,
    window_starts,
)
from storage.errors import InconsistentResultError, InvalidParameterError
from tests.helpers import raise_if_dask_computes


def _median(frames: np.ndarray, chunk: int) -> np.ndarray:
    lazy = da.from_array(frames, chunks=(chunk, *frames.shape[1:]))
    coarse = coarse_counts(lazy).compute()
    coarse_bin = median_bin(coarse, n_frames=len(frames))
    median = median_from_counts(coarse, fine_counts(lazy, coarse_bin).compute(), n_frames=len(frames))
    assert median is not None
    return median


@pytest.mark.parametrize(("n_frames", "chunk"), [(1, 1), (2, 1), (7, 3), (30, 4), (31, 31)])
def test_the_median_is_exactly_the_lower_median(n_frames: int, chunk: int) -> None:
    frames = np.random.default_rng(n_frames).integers(0, 256, size=(n_frames, 6, 7), dtype=np.uint8)
    expected = np.percentile(frames.reshape(n_frames, -1), 50, axis=0, method="lower").astype(np.uint8)
    np.testing.assert_array_equal(_median(frames, chunk), expected)


@pytest.mark.parametrize("n_frames", [1, 255, 256, 600])
def test_counts_are_exact_across_uint8_sums_and_pixel_tiles(n_frames: int) -> None:
    """Chunks of more than 255 frames and frames of more pixels than one counting tile."""
    rng = np.random.default_rng(n_frames)
    frames = rng.integers(0, 256, size=(n_frames, 40, 100), dtype=np.uint8)
    frames[:, 0, 0] = 255  # one pixel with every frame in the top bin
    lazy = da.from_array(frames, chunks=(n_frames, 40, 100))
    flat = frames.reshape(n_frames, -1).astype(np.int64)
    coarse_bin = rng.integers(0, 16, size=flat.shape[1], dtype=np.uint8)
    expected_coarse = np.stack([np.sum(flat >> 4 == j, axis=0) for j in range(16)])  # a bin per row
    expected_fine = np.stack(
        [np.sum(flat == 16 * coarse_bin + j, axis=0) for j in range(16)]
    )  # a bin per row
    np.testing.assert_array_equal(coarse_counts(lazy).compute(), expected_coarse)
    np.testing.assert_array_equal(fine_counts(lazy, coarse_bin).compute(), expected_fine)


@pytest.mark.parametrize("fault", ["coarse lost", "coarse twice", "fine twice"])
def test_counts_that_do_not_add_up_are_refused(fault: str) -> None:
    """A partial count lost or added twice (summed in place, a task run again) is an error, not a plate."""
    frames = np.random.default_rng(0).integers(0, 256, size=(20, 6, 7), dtype=np.uint8)
    lazy = da.from_array(frames, chunks=(5, 6, 7))
    coarse = coarse_counts(lazy).compute()
    fine = fine_counts(lazy, median_bin(coarse, n_frames=20)).compute()
    part = coarse_counts(lazy[:5]).compute()
    if fault == "coarse lost":
        with pytest.raises(InconsistentResultError, match="coarse counts"):
            median_bin(coarse - part, n_frames=20)
    elif fault == "coarse twice":
        with pytest.raises(InconsistentResultError, match="lost or added twice"):
            median_bin(coarse + part, n_frames=20)
    else:
        extra = fine_counts(lazy[:5], median_bin(coarse, n_frames=20)).compute()
        with pytest.raises(InconsistentResultError, match="fine counts"):
            median_from_counts(coarse, fine + extra, n_frames=20)


def test_counts_are_lazy() -> None:
    frames = da.zeros((20, 4, 5), dtype=np.uint8, chunks=(5, 4, 5))
    with raise_if_dask_computes():
        coarse_counts(frames)
        fine_counts(frames, np.zeros(20, dtype=np.uint8))
        frame_gains(frames, np.full(20, 100, dtype=np.uint8))
        sample_plate(frames)
        normalized_frames(frames, np.ones(20))


def test_colour_is_refused() -> None:
    with pytest.raises(InvalidParameterError, match="gray"):
        coarse_counts(da.zeros((2, 4, 5, 3), dtype=np.uint8))


def test_normalized_frames_divide_each_frame_by_its_gain() -> None:
    frames = np.random.default_rng(1).integers(0, 256, size=(9, 5, 6), dtype=np.uint8)
    gains = np.array([1.0, 0.5, 2.0, 1.3, 0.8, 1 / 32, 1.0, 4.0, 0.9])
    got = normalized_frames(da.from_array(frames, chunks=(4, 5, 3)), gains).compute()
    expected = np.clip(np.rint(frames / gains[:, None, None]), 0, 255).astype(np.uint8)
    expected[5] = frames[5]  # a gain under 1/16 (a fade to black) is not divided out
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(InvalidParameterError, match="gains must have shape"):
        normalized_frames(da.from_array(frames), gains[:5])


@pytest.mark.parametrize("per_task", [None, 6, 100])
def test_counts_of_grouped_chunks_and_of_divided_frames(per_task: int | None) -> None:
    frames = np.random.default_rng(5).integers(0, 256, size=(23, 6, 7), dtype=np.uint8)
    lazy = da.from_array(frames, chunks=(4, 6, 7))
    gains = np.random.default_rng(6).uniform(0.5, 1.5, size=23)
    divided = normalized_frames(lazy, gains)
    coarse = coarse_counts(lazy, frames_per_task=per_task).compute()
    np.testing.assert_array_equal(coarse, coarse_counts(lazy).compute())
    coarse_divided = coarse_counts(lazy, gains=gains, frames_per_task=per_task).compute()
    np.testing.assert_array_equal(coarse_divided, coarse_counts(divided).compute())
    bins = median_bin(coarse_divided, n_frames=23)
    fine = fine_counts(lazy, bins, gains=gains, frames_per_task=per_task).compute()
    np.testing.assert_array_equal(fine, fine_counts(divided, bins).compute())
    expected = np.percentile(divided.compute().reshape(23, -1), 50, axis=0, method="lower")
    np.testing.assert_array_equal(median_from_counts(coarse_divided, fine, n_frames=23), expected)


class _CountedReads:
    """Frames for ``dask.array.from_array`` that count how often each chunk is read."""

    def __init__(self, frames: np.ndarray) -> None:
        self.frames = frames
        self.shape, self.dtype, self.ndim = frames.shape, frames.dtype, frames.ndim
        self.reads: Counter[int] = Counter()

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        block = self.frames[key]
        if block.size:  # not dask's look at an empty slice for the dtype
            self.reads[int(key[0].start)] += 1
        return block


@pytest.mark.parametrize("frames_per_task", [None, 8])
def test_lazy_gains_and_the_counts_divided_by_them_share_one_read(frames_per_task: int | None) -> None:
    rng = np.random.default_rng(5)
    gains_made = np.linspace(0.6, 1.4, 12)[:, None, None]
    values = np.clip(rng.integers(40, 200, (1, 8, 9)) * gains_made + rng.normal(0, 3, (12, 8, 9)), 0, 255)
    source = _CountedReads(values.astype(np.uint8))
    frames = da.from_array(source, chunks=(4, 8, 9), asarray=True, fancy=False)
    plate = np.median(source.frames, axis=0)
    lazy_gains = frame_gains(frames, plate)
    gains, counts = dask.compute(
        lazy_gains, coarse_counts(frames, gains=lazy_gains, frames_per_task=frames_per_task), scheduler="sync"
    )
    assert dict(source.reads) == {0: 1, 4: 1, 8: 1}  # each chunk read once for both
    np.testing.assert_array_equal(gains, frame_gains(da.from_array(source.frames, chunks=4), plate).compute())
    expected = coarse_counts(da.from_array(source.frames, chunks=(4, 8, 9)), gains=gains).compute()
    np.testing.assert_array_equal(counts, expected)
    assert not np.allclose(gains, 1)  # the division matters here
    with pytest.raises(InvalidParameterError, match=r"gains must have shape \(12,\)"):
        coarse_counts(frames, gains=lazy_gains[:5])


def _lower_median(frames: np.ndarray) -> np.ndarray:
    flat = frames.reshape(len(frames), -1)
    return np.percentile(flat, 50, axis=0, method="lower").astype(np.uint8)


def _median_by_windows(frames: np.ndarray, guess: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """The window pass, then coarse and fine counts of the pixels that missed, as the models run them."""
    lazy = da.from_array(frames, chunks=(chunk, *frames.shape[1:]))
    starts = window_starts(guess)
    median, missed = median_in_windows(window_counts(lazy, starts).compute(), starts, n_frames=len(frames))
    pixels = np.flatnonzero(missed)
    if pixels.size:
        columns = pixel_columns(lazy, pixels)
        coarse = coarse_counts(columns).compute()
        fine = fine_counts(columns, median_bin(coarse, n_frames=len(frames))).compute()
        median[pixels] = median_from_counts(coarse, fine, n_frames=len(frames))
    return median, missed


@pytest.mark.parametrize(("n_frames", "chunk"), [(1, 1), (2, 1), (7, 3), (30, 4), (300, 256)])
def test_windows_give_the_exact_median_where_they_hold_it(n_frames: int, chunk: int) -> None:
    rng = np.random.default_rng(n_frames)
    frames = rng.integers(0, 256, size=(n_frames, 6, 7), dtype=np.uint8)
    frames[:, 0, :3] = [0, 128, 255]  # medians at both ends of the values, and inside
    expected = _lower_median(frames)
    guess = expected.astype(np.int16) + rng.integers(-12, 13, size=expected.shape)  # some guesses miss
    guess[:3] = [0, 128, 255]
    median, missed = _median_by_windows(frames, np.clip(guess, 0, 255), chunk)
    np.testing.assert_array_equal(median, expected)
    starts = window_starts(np.clip(guess, 0, 255)).astype(int)
    outside = (expected < starts) | (expected >= starts + WINDOW_VALUES)
    np.testing.assert_array_equal(missed, outside)
    assert not missed[:3].any()


def test_window_starts_stay_inside_the_values() -> None:
    np.testing.assert_array_equal(
        window_starts(np.array([[0, 5, 8, 100, 247, 248, 255]], dtype=np.uint8)), [0, 0, 0, 92, 239, 240, 240]
    )


def test_window_counts_count_below_inside_and_above() -> None:
    frames = np.array([[[3, 200]], [[20, 200]], [[12, 199]], [[40, 255]], [[12, 0]]], dtype=np.uint8)
    starts = np.array([10, 190], dtype=np.uint8)
    counts = window_counts(da.from_array(frames, chunks=(2, 1, 2)), starts).compute()
    assert counts.shape == (WINDOW_VALUES + 2, 2) and counts.dtype == np.uint32
    # pixel 0, window 10..25: 3 below; 12 twice; 20; 40 above
    # pixel 1, window 190..205: 0 below; 199; 200 twice; 255 above
    expected = np.zeros_like(counts)
    expected[[0, 1 + 2, 1 + 10, -1], 0] = [1, 2, 1, 1]
    expected[[0, 1 + 9, 1 + 10, -1], 1] = [1, 1, 2, 1]
    np.testing.assert_array_equal(counts, expected)


def test_window_counts_of_divided_frames_and_grouped_chunks() -> None:
    frames = np.random.default_rng(8).integers(60, 200, size=(23, 6, 7), dtype=np.uint8)
    lazy = da.from_array(frames, chunks=(4, 6, 7))
    gains = np.random.default_rng(9).uniform(0.8, 1.2, size=23)
    divided = normalized_frames(lazy, gains)
    starts = window_starts(_lower_median(frames))
    grouped = window_counts(lazy, starts, gains=gains, frames_per_task=8).compute()
    np.testing.assert_array_equal(grouped, window_counts(divided, starts).compute())


@pytest.mark.parametrize("fault", ["lost", "twice"])
def test_window_counts_that_do_not_add_up_are_refused(fault: str) -> None:
    frames = np.random.default_rng(0).integers(0, 256, size=(20, 6, 7), dtype=np.uint8)
    lazy = da.from_array(frames, chunks=(5, 6, 7))
    starts = window_starts(_lower_median(frames))
    counts = window_counts(lazy, starts).compute()
    part = window_counts(lazy[:5], starts).compute()
    wrong = counts - part if fault == "lost" else counts + part
    with pytest.raises(InconsistentResultError, match="window counts"):
        median_in_windows(wrong, starts, n_frames=20)


def test_window_counts_refuse_starts_of_another_frame_size() -> None:
    with pytest.raises(InvalidParameterError, match=r"starts must have shape \(20,\)"):
        window_counts(da.zeros((2, 4, 5), dtype=np.uint8), np.zeros(3, dtype=np.uint8))


def test_pixel_columns_are_those_pixels_frames() -> None:
    frames = np.random.default_rng(2).integers(0, 256, size=(9, 4, 5), dtype=np.uint8)
    pixels = np.array([0, 7, 19])
    got = pixel_columns(da.from_array(frames, chunks=(4, 4, 5)), pixels)
    assert got.shape == (9, 1, 3)
    np.testing.assert_array_equal(got.compute()[:, 0], frames.reshape(9, -1)[:, pixels])


@pytest.mark.parametrize(("n_frames", "chunk", "per_task"), [(1, 1, None), (7, 3, None), (300, 32, 64)])
def test_value_counts_give_the_exact_median(n_frames: int, chunk: int, per_task: int | None) -> None:
    rng = np.random.default_rng(n_frames)
    frames = rng.integers(0, 256, size=(n_frames, 3, 5), dtype=np.uint8)
    frames[:, 0, :2] = [0, 255]
    lazy = da.from_array(frames, chunks=(chunk, 3, 5))
    counts = value_counts(lazy, frames_per_task=per_task).compute()
    assert counts.shape == (256, 15) and counts.dtype == np.uint32
    flat = frames.reshape(n_frames, -1)
    np.testing.assert_array_equal(counts, [np.sum(flat == value, axis=0) for value in range(256)])
    np.testing.assert_array_equal(median_of_values(counts, n_frames=n_frames), _lower_median(frames))


def test_value_counts_of_divided_frames_and_their_faults() -> None:
    frames = np.random.default_rng(4).integers(60, 200, size=(20, 2, 3), dtype=np.uint8)
    lazy = da.from_array(frames, chunks=(5, 2, 3))
    gains = np.random.default_rng(5).uniform(0.8, 1.2, size=20)
    counts = value_counts(lazy, gains=gains).compute()
    np.testing.assert_array_equal(counts, value_counts(normalized_frames(lazy, gains)).compute())
    part = value_counts(lazy[:5], gains=gains[:5]).compute()
    with pytest.raises(InconsistentResultError, match="value counts"):
        median_of_values(counts + part, n_frames=20)


def test_value_counts_refuse_more_pixels_than_their_partial_holds() -> None:
    too_many = da.zeros((2, 1, VALUE_COUNT_PIXELS + 1), dtype=np.uint8)
    with pytest.raises(InvalidParameterError, match="at most 65536 pixels"):
        value_counts(too_many)
