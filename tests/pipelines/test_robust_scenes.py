"""The default background against plain SVD on synthetic scenes built to break SVD."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.synthetic import SceneSpec, write_scene
from tests.helpers import run_cli

CLUSTER = ("--workers", "1", "--threads-per-worker", "2")


@pytest.mark.slow
def test_a_lingering_crowd_under_drifting_light_defeats_svd_not_the_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Twelve walkers who each stand still for a quarter of the clip, light varying by +-40 %."""
    spec = SceneSpec(
        width=320, height=240, n_frames=240, n_objects=12, noise_sigma=3.0, illumination_drift=0.4,
        pause_fraction=0.25, seed=5,
    )  # fmt: skip
    video, truth, out = tmp_path / "crowd.mp4", tmp_path / "truth", tmp_path / "out"
    write_scene(spec, video, truth_dir=truth, truth_every=4)
    scores = {}
    for model in ("robust", "svd"):
        run = [
            "run",
            str(video),
            "--out",
            str(out),
            "--rank",
            "3",
            "--model",
            model,
            "--no-videos",
            "--quiet",
        ]
        assert main([*run, *CLUSTER]) == 0
        argv = ["evaluate", "--store", str(out / "store.zarr"), "--truth", str(truth), "--json"]
        status, stdout, stderr = run_cli(capsys, *argv)
        assert status == 0, stderr
        scores[model] = json.loads(stdout)["vidsvd"]["f_measure"]
    # measured: robust 0.996, svd 0.623
    assert scores["robust"] >= 0.95 and scores["svd"] < 0.9, scores
