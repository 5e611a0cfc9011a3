"""The fitted backgrounds' medians where the sample's guess is far off: the pixels that miss their window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.background_models import GAIN_SAMPLE_FRAMES
from pipelines.cli import main
from pipelines.masks import sample_frames
from pipelines.steps import background as background_step
from pipelines.steps.background import fit_background
from pipelines.steps.context import JobContext
from storage.video_array import open_video
from storage.video_encoder import write_video

N_FRAMES = 131


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lossless video with a patch bright on the frames a 64-frame sample takes, dark on the others."""
    folder = tmp_path_factory.mktemp("windows")
    rng = np.random.default_rng(3)
    frames = rng.integers(90, 110, size=(N_FRAMES, 24, 32), dtype=np.uint8)
    sampled = sample_frames(N_FRAMES, GAIN_SAMPLE_FRAMES)
    assert len(sampled) * 2 < N_FRAMES  # so the dark frames hold the median
    dark = np.ones(N_FRAMES, dtype=bool)
    dark[sampled] = False
    frames[:, :6, :8] = np.where(dark[:, None, None], 40, 200) + rng.integers(0, 3, size=(N_FRAMES, 6, 8))
    video, location = folder / "flicker.mkv", folder / "flicker.zarr"
    write_video(video, frames, fps=10.0, codec="ffv1")
    assert main(["ingest", str(video), "--store", str(location), "--quiet"]) == 0
    return location


@pytest.mark.parametrize("counted", ["value by value", "coarse and fine"])
@pytest.mark.parametrize("model", ["median", "robust"])
def test_pixels_outside_their_window_get_their_exact_median(
    store: Path, model: str, counted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if counted == "coarse and fine":  # as when more pixels miss than value counts take
        monkeypatch.setattr(background_step, "VALUE_COUNT_PIXELS", 0)
    stored = open_video(store).frames.compute().reshape(N_FRAMES, -1)
    dark_frame = int(np.flatnonzero(stored[:, 0] < 100)[0])
    with JobContext(progress=False) as job:
        factors = fit_background(store=store, model=model, force=True, context=job)
        background = (factors.U.compute() * factors.s.compute()) @ factors.Vt.compute()[:, dark_frame]
    more_reads = 1 if counted == "value by value" else 2  # of the patch's columns
    # robust: its first pass, its gains and its counts of where objects stood (none did)
    assert factors.passes == {"median": 1, "robust": 3}[model] + more_reads
    patch = np.zeros((24, 32), dtype=bool)
    patch[:6, :8] = True
    if model == "median":
        exact = np.percentile(stored, 50, axis=0, method="lower")
        np.testing.assert_allclose(background, exact, atol=1e-3 * 255)
    # the dark frames' value (robust: times a gain, within the frames' noise of +-10 %), not 200
    assert np.abs(background.reshape(24, 32)[patch] - 41).max() < 8
