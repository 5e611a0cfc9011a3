"""`demo` reuses its scene and store only when they are of the scene asked for."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines import api
from pipelines.steps.context import JobContext
from pipelines.synthetic import SceneSpec
from storage.truth import read_truth_masks
from storage.video_array import open_video

FIRST = SceneSpec(width=64, height=48, n_frames=40, n_objects=2, seed=1)
SECOND = SceneSpec(width=64, height=48, n_frames=52, n_objects=3, seed=2)


def _demo(out: Path, spec: SceneSpec) -> dict[str, dict[str, float]]:
    with JobContext(progress=False) as job:
        return api.demo(out=out, spec=spec, context=job)


def test_a_rerun_of_the_same_scene_reuses_it(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    first = _demo(out, FIRST)
    written = (out / "scene.mp4").stat().st_mtime_ns
    assert json.loads((out / "scene.json").read_text())["seed"] == 1
    assert _demo(out, FIRST) == first
    assert (out / "scene.mp4").stat().st_mtime_ns == written


def test_another_scene_is_written_again_and_scored_on_its_own_truth(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    _demo(out, FIRST)
    scores = _demo(out, SECOND)
    assert json.loads((out / "scene.json").read_text())["n_frames"] == SECOND.n_frames
    assert open_video(out / "store.zarr").n_frames == SECOND.n_frames
    truth = read_truth_masks(out / "truth")
    assert len(truth) == SECOND.n_frames == scores["vidsvd"]["frames"]
    assert scores["vidsvd"]["f_measure"] > 0.9


def test_a_scene_without_its_record_is_written_again(tmp_path: Path) -> None:
    """An interrupted demo (scene written, record not yet) does not reuse the scene."""
    out = tmp_path / "demo"
    _demo(out, FIRST)
    (out / "scene.json").unlink()
    written = (out / "scene.mp4").stat().st_mtime_ns
    _demo(out, FIRST)
    assert (out / "scene.mp4").stat().st_mtime_ns != written
    assert (out / "scene.json").exists()
