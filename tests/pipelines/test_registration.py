"""Frames registered to the plate where the camera moved: shifts, moved frames, masks in the camera's coordinates."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from pipelines.registration import moved_back, moved_forward, registered, shifts_against, unregistered
from pipelines.scene_effects import camera_shift, shaken
from pipelines.scene_textures import render_background
from pipelines.synthetic import SceneSpec, write_scene
from storage.factors import open_factors
from tests.helpers import run_cli

SHIFTS = np.array([(2, -1), (0, 0), (-3, 4), (1, 1)])


def _ground(width: int = 96, height: int = 72, *, seed: int = 0) -> np.ndarray:
    return render_background(SceneSpec(width=width, height=height, n_frames=2, seed=seed))


def _shaken_frames(ground: np.ndarray) -> np.ndarray:
    return np.stack([shaken(ground, (int(dy), int(dx))) for dy, dx in SHIFTS])


def test_moving_back_puts_each_frame_on_the_plate_and_forward_returns_it() -> None:
    ground = _ground()
    frames = _shaken_frames(ground)
    back = moved_back(frames, SHIFTS)
    inner = (slice(4, -4), slice(5, -5))  # away from the edges the shifts bring in
    assert all(np.array_equal(frame[inner], ground[inner]) for frame in back)
    forward = moved_forward(back, SHIFTS)
    assert all(np.array_equal(a[inner], b[inner]) for a, b in zip(forward, frames, strict=True))
    # moved forward, a mask is 0 where the plate's coordinates do not reach
    ones = moved_forward(np.ones((4, 10, 12), dtype=np.uint8), SHIFTS)
    assert ones[0, :2].sum() == 0 and ones[0, :, -1].sum() == 0 and ones[0, 2:, :-1].all()
    assert ones[1].all()


def test_registered_views_are_lazy_per_chunk_and_named_by_their_shifts() -> None:
    frames = _shaken_frames(_ground())
    lazy = da.from_array(frames, chunks=(3, 72, 96))
    assert np.array_equal(registered(lazy, SHIFTS).compute(), moved_back(frames, SHIFTS))
    assert np.array_equal(unregistered(lazy, SHIFTS).compute(), moved_forward(frames, SHIFTS))
    assert registered(lazy, SHIFTS).name != registered(lazy, SHIFTS * 0).name
    with pytest.raises(ValueError, match="3 shifts for 4 frames"):
        registered(lazy, SHIFTS[:3])


def test_shifts_against_the_plate_are_the_true_ones_and_zero_for_still_frames() -> None:
    ground = _ground(160, 120, seed=4)
    rng = np.random.default_rng(5)
    frames = _shaken_frames(ground).astype(np.float32) + rng.normal(0, 3, (4, 120, 160))
    found = shifts_against(
        da.from_array(np.clip(frames, 0, 255).astype(np.uint8), chunks=(2, 120, 160)), ground
    )
    assert found.dtype == np.int32
    assert found.compute().tolist() == SHIFTS.tolist()


def _scene(tmp_path: Path, *, jitter: int) -> tuple[SceneSpec, Path]:
    spec = SceneSpec(width=160, height=120, n_frames=90, n_objects=4, camera_jitter=jitter, seed=21)
    video = tmp_path / "scene.mp4"
    write_scene(spec, video, truth_dir=tmp_path / "truth")
    return spec, video


def test_a_shaking_camera_is_registered_and_its_masks_stay_where_the_frames_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Shaken by up to 3 pixels at every frame: the fit records each frame's true shift,
    the masks are in the camera's coordinates (scored against the camera's truth), the
    videos are made, and ``evaluate``'s robust row is the separation's own."""
    spec, video = _scene(tmp_path, jitter=3)
    out = tmp_path / "out"
    status, _, stderr = run_cli(capsys, "run", str(video), "--out", str(out))
    assert status == 0, stderr
    assert "the camera moves (" in stderr and "registering every frame to the plate" in stderr
    assert "vidsvd: warning: the camera moves" not in stderr  # registered: nothing left to warn of
    store = out / "store.zarr"
    shifts = open_factors(store, "robust").frame_shifts
    assert shifts is not None and shifts.shape == (spec.n_frames, 2)
    truth = np.array([camera_shift(spec, frame) for frame in range(spec.n_frames)])
    # the plate's place is where most frames put the ground: the shifts are the true ones
    # up to one offset, the same for every frame
    offsets, counts = np.unique(shifts - truth, axis=0, return_counts=True)
    assert counts.max() >= 0.95 * spec.n_frames, dict(zip(map(tuple, offsets), counts, strict=True))
    separation = json.loads((out / "separation.json").read_text())
    assert separation["frames_registered"]["frames"] == spec.n_frames
    report = json.loads((out / "report.json").read_text())["separation"]
    assert report["frames_registered"] == separation["frames_registered"]
    assert "frames registered" in (out / "report.html").read_text()
    assert (out / "compare.mp4").stat().st_size > 0 and (out / "foreground.mp4").stat().st_size > 0
    status, stdout, stderr = run_cli(
        capsys,
        "evaluate",
        "--store",
        str(store),
        "--truth",
        str(tmp_path / "truth"),
        "--format",
        "masks",
        "--models",
        "robust",
        "--json",
    )
    assert status == 0, stderr
    scores = json.loads(stdout)
    f_stored = scores["vidsvd"]["f_measure"]
    assert f_stored >= 0.97, scores
    assert scores["vidsvd-robust"]["f_measure"] == pytest.approx(f_stored, abs=1e-9)


def test_a_still_camera_is_not_registered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, video = _scene(tmp_path, jitter=0)
    out = tmp_path / "out"
    status, _, stderr = run_cli(capsys, "run", str(video), "--out", str(out), "--no-videos")
    assert status == 0, stderr
    assert "registering" not in stderr
    assert open_factors(out / "store.zarr", "robust").frame_shifts is None
    assert "frames_registered" not in json.loads((out / "separation.json").read_text())
