"""The demo: a synthetic scene with ground truth, the main job on it, and its scores."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Any

from pipelines.decompose import SvdParameters
from pipelines.steps.context import JobContext, step_context
from pipelines.steps.evaluate import evaluate
from pipelines.steps.job import run
from pipelines.synthetic import SceneSpec, write_scene
from storage.derived import write_file_atomic
from storage.output_folder import OutputFolder
from storage.truth import FRAME_MAP_NAME

__all__ = ["DEMO_SCENE", "demo"]

DEMO_SCENE = SceneSpec(width=320, height=240, n_frames=300, fps=10.0, n_objects=5, seed=7)
"""The demo's synthetic scene: 30 s of 320x240 with five moving objects."""


def demo(
    *,
    out: str | os.PathLike[str],
    spec: SceneSpec | None = None,
    context: JobContext | None = None,
) -> dict[str, dict[str, Any]]:
    """Write a synthetic scene with ground truth, run the main job on it and score it.

    Returns the scores of :func:`pipelines.steps.evaluate.evaluate`; also writes
    them to ``out/scores.json``.

    A rerun into the same folder reuses the scene, and what the main job stored of
    it, only when the folder's ``scene.json`` (written once the scene and its truth
    are complete) records this ``spec``; otherwise the scene and its truth are written
    again and the main job starts again from a fresh store.
    """
    folder = OutputFolder.at(out)
    scene = spec or DEMO_SCENE
    wanted = dataclasses.asdict(scene)
    with step_context(context) as job:
        reused = _recorded_spec(folder) == wanted and folder.demo_scene.exists()
        if not reused:
            job.say(
                f"writing a synthetic {scene.width}x{scene.height} scene of {scene.n_frames} frames "
                "with truth"
            )
            folder.prepare()
            folder.demo_spec.unlink(missing_ok=True)
            shutil.rmtree(folder.demo_truth, ignore_errors=True)  # no mask of another scene stays
            write_scene(scene, folder.demo_scene, truth_dir=folder.demo_truth, truth_every=1)
            write_file_atomic(folder.demo_spec, json.dumps(wanted, indent=2) + "\n")
        run(
            [folder.demo_scene],
            out=folder.path,
            parameters=SvdParameters(rank=10),
            overwrite=not reused and folder.default_store.exists(),
            truth=folder.demo_truth,  # the report scores each model on it
            context=job,
        )
        scores = evaluate(store=folder.default_store, truth=folder.demo_truth, context=job)
    write_file_atomic(folder.scores_json, json.dumps(scores, indent=2) + "\n")
    return scores


def _recorded_spec(folder: OutputFolder) -> dict[str, Any] | None:
    """The spec ``scene.json`` records, or None (no complete scene, or a file that is not one)."""
    try:
        recorded = json.loads(folder.demo_spec.read_text())
    except (OSError, ValueError):
        return None
    has_truth = (folder.demo_truth / FRAME_MAP_NAME).exists()
    return recorded if isinstance(recorded, dict) and has_truth else None
