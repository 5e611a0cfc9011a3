"""The median and robust backgrounds: exact medians from counts, gains, rank-1 factors."""

from __future__ import annotations

from collections import Counter

import dask
import dask.array as da
import numpy as np
import pytest

from pipelines.background_models import (
    coarse_counts,
    fine_counts,
    median_bin,
    median_from_counts,
    normalized_frames,
    rank_one_factors,
    sample_plate,
)
from pipelines.frame_gains import frame_gains
from pipelines.synthetic import SceneSpec, render_background, render_scene
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
    expected_coarse = np.stack([np.sum(flat >> 4 == j, axis=0) for j in range(16)], axis=1)
    expected_fine = np.stack([np.sum(flat == 16 * coarse_bin + j, axis=0) for j in range(16)], axis=1)
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


def test_the_median_ignores_what_passes_through_less_than_half_the_time() -> None:
    spec = SceneSpec(width=64, height=48, n_frames=60, n_objects=4, seed=3, noise_sigma=0.0)
    rendered = list(render_scene(spec))
    frames = np.stack([frame for frame, _ in rendered])
    occupancy = np.stack([mask > 0 for _, mask in rendered]).mean(axis=0)
    plate = _median(frames, 16).reshape(48, 64)
    clean = render_background(spec)
    seldom = occupancy < 0.45
    assert seldom.mean() > 0.9
    assert np.abs(plate.astype(int) - clean)[seldom].max() <= 1


def test_counts_are_lazy() -> None:
    frames = da.zeros((20, 4, 5), dtype=np.uint8, chunks=(5, 4, 5))
    with raise_if_dask_computes():
        coarse_counts(frames)
        fine_counts(frames, np.zeros(20, dtype=np.uint8))
        frame_gains(frames, np.full(20, 100, dtype=np.uint8))
        sample_plate(frames)
        normalized_frames(frames, np.ones(20))


def test_gains_follow_illumination() -> None:
    plate = np.random.default_rng(0).integers(40, 200, size=(1, 30, 40)).astype(np.float64)
    gains = np.linspace(0.8, 1.2, 25)
    frames = np.clip(np.rint(plate * gains[:, None, None]), 0, 255).astype(np.uint8)
    measured = frame_gains(
        da.from_array(frames, chunks=(10, 30, 40)), plate.astype(np.uint8).ravel()
    ).compute()
    np.testing.assert_allclose(measured, gains, atol=0.01)


@pytest.mark.parametrize("light", [1.0, 0.8])
def test_gains_ignore_an_object_covering_most_of_the_frame(light: float) -> None:
    """A dark truck over two thirds of a textured view: the view's light, not the truck's."""
    rng = np.random.default_rng(4)
    plate = rng.integers(60, 200, size=(48, 64)).astype(np.uint8)
    frame = plate * light + rng.normal(0.0, 2.0, plate.shape)
    frame[:, :42] = rng.integers(30, 50, size=(48, 42))  # its own texture, not the plate's
    frames = np.clip(np.rint(frame), 0, 255).astype(np.uint8)[None]
    (measured,) = frame_gains(da.from_array(frames), plate).compute()
    # the median of all the ratios is the truck's, about 0.3
    assert measured == pytest.approx(light, abs=0.02)


def test_rank_one_factors_rebuild_plate_times_gain() -> None:
    plate = np.array([10, 20, 30], dtype=np.uint8)
    gains = np.array([1.0, 0.5, 2.0])
    u, s, vt = rank_one_factors(plate, gains)
    np.testing.assert_allclose((u * s) @ vt, np.outer(plate, gains), rtol=1e-5)
    u, s, vt = rank_one_factors(np.zeros(3, dtype=np.uint8), gains)
    assert float(s[0]) == 0.0 and np.isfinite(vt).all()


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


@pytest.mark.parametrize(("n_frames", "n_sample"), [(1, 64), (10, 64), (100, 7)])
def test_sample_plate_is_the_lower_median_of_evenly_spread_frames(n_frames: int, n_sample: int) -> None:
    frames = np.random.default_rng(n_frames).integers(0, 256, size=(n_frames, 4, 5), dtype=np.uint8)
    picked = np.unique(np.rint(np.linspace(0, n_frames - 1, min(n_sample, n_frames))).astype(int))
    expected = np.percentile(frames[picked].reshape(len(picked), -1), 50, axis=0, method="lower")
    got = sample_plate(da.from_array(frames, chunks=(3, 4, 5)), n_sample=n_sample).compute()
    assert got.shape == (20,) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected.astype(np.uint8))


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
