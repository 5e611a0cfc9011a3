"""The warning for a background that does not fit the still pixels (the auto threshold then hides everything)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.masks import auto_threshold, otsu_split
from pipelines.poor_fit import POOR_FIT_LEVEL, poor_fit_warning
from pipelines.synthetic import SceneSpec
from tests.helpers import ingested_scene, run_cli


def _warning_of(sample: np.ndarray) -> str | None:
    return poor_fit_warning(sample, threshold=auto_threshold(sample))


def test_sensor_noise_and_objects_raise_no_warning() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 3, size=200_000)
    assert _warning_of(noise) is None
    # a threshold that half of Otsu's split set, however high, is the objects' contrast
    objects = np.concatenate([rng.uniform(0, 140, size=100_000), np.full(100_000, 300.0)])
    high = 0.5 * otsu_split(np.abs(objects))
    assert high > POOR_FIT_LEVEL
    assert poor_fit_warning(objects, threshold=high) is None
    assert poor_fit_warning(objects, threshold=high + 1) is not None


def test_a_residual_as_wide_as_the_light_changes_warns() -> None:
    rng = np.random.default_rng(1)
    misfit = rng.normal(0, 40, size=200_000)  # every pixel off by tens of grey levels
    warning = _warning_of(misfit)
    assert warning is not None
    assert "does not fit the still pixels" in warning and "--model robust" in warning
    assert "\n" not in warning
    assert poor_fit_warning(misfit, threshold=POOR_FIT_LEVEL) is None  # at the level: no warning


@pytest.mark.parametrize(("model", "warned"), [("median", True), ("robust", False)])
def test_run_warns_once_when_the_model_cannot_follow_the_light(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str, warned: bool
) -> None:
    """Under a light that varies by +-45 %, the median (no gain) leaves the whole frame in the residual.

    The separation warns once, and the report shows it beside the threshold.
    """
    spec = SceneSpec(width=64, height=48, n_frames=80, n_objects=2, illumination_drift=0.45, seed=3)
    video, _ = ingested_scene(spec, tmp_path)
    out = tmp_path / "out"
    status, _, stderr = run_cli(capsys, "run", str(video), "--out", str(out), "--model", model, "--no-videos")
    assert status == 0
    lines = [line for line in stderr.splitlines() if line.startswith("vidsvd: warning: the auto threshold")]
    assert len(lines) == (1 if warned else 0), stderr
    separation = json.loads((out / "report.json").read_text())["separation"]
    assert separation.get("threshold_warning") == (
        lines[0].removeprefix("vidsvd: warning: ") if warned else None
    )
    assert ("threshold warning" in (out / "report.html").read_text()) is warned
