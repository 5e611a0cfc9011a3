"""The median and robust backgrounds: the median of a sample, gains, rank-1 factors."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from pipelines.background_models import rank_one_factors, sample_plate
from pipelines.frame_gains import frame_gains
from pipelines.median_counts import coarse_counts, fine_counts, median_bin, median_from_counts
from pipelines.synthetic import SceneSpec, render_background, render_scene


def _median(frames: np.ndarray, chunk: int) -> np.ndarray:
    lazy = da.from_array(frames, chunks=(chunk, *frames.shape[1:]))
    coarse = coarse_counts(lazy).compute()
    fine = fine_counts(lazy, median_bin(coarse, n_frames=len(frames))).compute()
    return median_from_counts(coarse, fine, n_frames=len(frames))


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


@pytest.mark.parametrize(("n_frames", "n_sample"), [(1, 64), (10, 64), (100, 7)])
def test_sample_plate_is_the_lower_median_of_evenly_spread_frames(n_frames: int, n_sample: int) -> None:
    frames = np.random.default_rng(n_frames).integers(0, 256, size=(n_frames, 4, 5), dtype=np.uint8)
    picked = np.unique(np.rint(np.linspace(0, n_frames - 1, min(n_sample, n_frames))).astype(int))
    expected = np.percentile(frames[picked].reshape(len(picked), -1), 50, axis=0, method="lower")
    got = sample_plate(da.from_array(frames, chunks=(3, 4, 5)), n_sample=n_sample).compute()
    assert got.shape == (20,) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected.astype(np.uint8))
