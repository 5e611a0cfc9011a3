"""Frames registered to the plate where the camera moved: shifts, moved frames, masks in the camera's coordinates."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from pipelines.footage_registration import FootageRegistration
from pipelines.registration import (
    MOVED_FRAMES_TO_REGISTER,
    blend_stretches,
    moved_back,
    moved_forward,
    registered,
    shifts_against,
    unregistered,
)
from pipelines.scene_effects import camera_shift, shaken
from pipelines.scene_textures import render_background
from pipelines.synthetic import SceneSpec, render_scene, write_scene
from storage.derived import open_derived
from storage.factors import open_factors
from storage.video_encoder import write_video
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
    # or, for masks, their nearest edge value there: marked where the edge beside it is
    repeated = moved_forward(back, SHIFTS, border="repeat")
    assert all(np.array_equal(a[inner], b[inner]) for a, b in zip(repeated, forward, strict=True))
    assert moved_forward(np.ones((4, 10, 12), dtype=bool), SHIFTS, border="repeat").all()
    edge = np.zeros((1, 6, 8), dtype=np.uint8)
    edge[0, 0, 3] = 255  # an object at the top edge of the plate's view, the view moved down by 2
    carried = moved_forward(edge, np.array([(2, 0)]), border="repeat")[0]
    assert carried[:3, 3].tolist() == [255, 255, 255] and np.count_nonzero(carried) == 3


def test_registered_views_are_lazy_per_chunk_and_named_by_their_shifts() -> None:
    frames = _shaken_frames(_ground())
    lazy = da.from_array(frames, chunks=(3, 72, 96))
    assert np.array_equal(registered(lazy, SHIFTS).compute(), moved_back(frames, SHIFTS))
    assert np.array_equal(unregistered(lazy, SHIFTS).compute(), moved_forward(frames, SHIFTS))
    assert np.array_equal(
        unregistered(lazy, SHIFTS, border="repeat").compute(), moved_forward(frames, SHIFTS, border="repeat")
    )
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


def test_frames_registered_by_their_lazy_shifts_are_measured_and_moved_in_one_graph() -> None:
    """Shifts still to be measured (``shifts_against`` of the same frames) move each frame
    back as the measured shifts do, and name the graph apart from them."""
    ground = _ground(160, 120, seed=4)
    lazy = da.from_array(_shaken_frames(ground), chunks=(2, 120, 160))
    measured = shifts_against(lazy, ground)
    moved = registered(lazy, measured)
    assert np.array_equal(moved.compute(), registered(lazy, measured.compute()).compute())
    assert np.array_equal(moved.compute(), moved_back(_shaken_frames(ground), SHIFTS))
    assert moved.name != registered(lazy, SHIFTS).name
    with pytest.raises(ValueError, match="3 shifts for 4 frames"):
        registered(lazy, measured[:3])


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


def _f_measure(masks: np.ndarray, truth: np.ndarray) -> float:
    hits = np.count_nonzero(masks & truth)
    return 2 * hits / max(np.count_nonzero(masks) + np.count_nonzero(truth), 1)


@pytest.mark.parametrize("jitter", [0, 2])
def test_each_plate_window_is_registered_on_its_own_and_plates_apart_do_not_blend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], jitter: int
) -> None:
    """Two plates of 65 frames; the camera is knocked by (2, 3) pixels between them, and
    shaken by up to ``jitter`` pixels at every frame.  Each window is registered to its
    own plate where its frames moved, the two plates, which sit apart, are not blended,
    and the masks stay on the objects."""
    spec = SceneSpec(width=160, height=120, n_frames=130, n_objects=3, camera_jitter=jitter, seed=5)
    knock = (2, 3)
    frames, truth = [], []
    for index, (frame, mask) in enumerate(render_scene(spec)):
        moved = knock if index >= 65 else (0, 0)
        frames.append(shaken(frame, moved))
        truth.append(shaken(mask, moved) > 127)
    video = tmp_path / "knocked.mp4"
    write_video(video, frames, fps=spec.fps, color=False)
    out = tmp_path / "out"
    status, _, stderr = run_cli(
        capsys, "run", str(video), "--out", str(out), "--no-videos", "--plate-window", "1"
    )
    assert status == 0, stderr
    assert "the camera moved between plates at 1 of the windows' edges" in stderr
    assert "vidsvd: warning" not in stderr
    shifts = open_factors(out / "store.zarr", "robust").frame_shifts
    if jitter == 0:  # each window's frames stand still on its plate
        assert "registering" not in stderr and shifts is None
    else:
        assert shifts is not None
        own = np.array([camera_shift(spec, frame) for frame in range(spec.n_frames)])
        for window in (slice(0, 65), slice(65, 130)):  # one offset per window: its plate's place
            offsets, counts = np.unique(shifts[window] - own[window], axis=0, return_counts=True)
            assert counts.max() >= 0.9 * 65, dict(zip(map(tuple, offsets), counts, strict=True))
    masks = open_derived(out / "store.zarr", "masks").data.compute() > 0
    assert _f_measure(masks, np.stack(truth)) >= 0.98


def test_blending_is_cut_only_between_neighbouring_plates_that_sit_apart() -> None:
    """Four windows in two sources: the third plate is the ground moved by (0, 3), the
    fourth (the second source's first) moved back.  One cut, at the third window; a
    source's start is never a cut of its own, and plates that agree keep one stretch."""
    ground = _ground(160, 120)
    plates = [ground.ravel(), ground.ravel(), shaken(ground, (0, 3)).ravel(), ground.ravel()]
    windows = [(0, 10), (10, 20), (20, 30), (30, 40)]
    sources = [(0, 30), (30, 40)]
    stretches = blend_stretches(plates, windows, sources=sources, shape=ground.shape)
    assert stretches == [(0, 20), (20, 30), (30, 40)]
    assert blend_stretches(plates[:2], windows[:2], sources=[(0, 20)], shape=ground.shape) == [(0, 20)]


def test_a_shake_the_first_plate_blurs_is_registered_in_rounds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Shaken by up to 3 pixels at every frame, the first plate is so blurred that only 4
    of the 24 sampled frames agree on a shift against it (below the warning's bar), and
    one round of the sample plate left 9 of 24 frames off the fitted plate.  The fit
    registers it from 2 frames and makes its sample plate in rounds: nothing is left to
    warn of, and 94 % of the frames get their true shift (the others are a pixel off)."""
    spec = SceneSpec(
        width=160, height=120, n_frames=300, n_objects=6, noise_sigma=3.0, camera_jitter=3, seed=43
    )
    video = tmp_path / "shake3.mp4"
    write_scene(spec, video)
    out = tmp_path / "out"
    status, _, stderr = run_cli(capsys, "run", str(video), "--out", str(out), "--no-videos")
    assert status == 0, stderr
    assert "registering every frame to the plate" in stderr
    assert "vidsvd: warning: the camera moves" not in stderr
    shifts = open_factors(out / "store.zarr", "robust").frame_shifts
    assert shifts is not None
    truth = np.array([camera_shift(spec, frame) for frame in range(spec.n_frames)])
    offsets, counts = np.unique(shifts - truth, axis=0, return_counts=True)
    assert counts.max() >= 0.9 * spec.n_frames, dict(zip(map(tuple, offsets), counts, strict=True))


def test_footage_is_registered_from_the_first_block_whose_probes_moved() -> None:
    """Three blocks of a still ground with noise, the camera knocked by (2, -3) from the
    second block's sixth frame: nothing is measured as moved in the first block, the
    second starts registration (its probes agree), and every frame after the knock gets
    the knock's shift, the frames before it (0, 0)."""
    ground = _ground(160, 120).astype(np.float32)
    rng = np.random.default_rng(3)
    frames = np.stack(
        [
            np.clip(
                shaken(ground, (2, -3) if index >= 15 else (0, 0)) + rng.normal(0, 2, ground.shape), 0, 255
            )
            for index in range(30)
        ]
    ).astype(np.uint8)
    registration = FootageRegistration(ground, first_probes=8, later_probes=4)
    blocks = [registration.shifts(frames[start : start + 10]) for start in (0, 10, 20)]
    assert not blocks[0].any()
    start = registration.started
    assert start is not None and (start.frame, start.probed) == (10, 4)
    assert start.agreed >= MOVED_FRAMES_TO_REGISTER
    shifts = np.concatenate(blocks)
    np.testing.assert_array_equal(shifts[15:], np.tile((2, -3), (15, 1)))
    np.testing.assert_array_equal(shifts[:15], 0)
    assert registration.frames_seen == 30 and registration.registered_frames == 15
    assert registration.largest_shift_px == pytest.approx(np.hypot(2, 3))


def test_still_footage_is_never_registered() -> None:
    ground = _ground(160, 120).astype(np.float32)
    rng = np.random.default_rng(4)
    registration = FootageRegistration(ground, first_probes=24)
    for _ in range(3):
        block = np.clip(ground + rng.normal(0, 3, (12, *ground.shape)), 0, 255).astype(np.uint8)
        assert not registration.shifts(block).any()
    assert registration.started is None and registration.frames_seen == 36
    with pytest.raises(ValueError, match="probes must be positive"):
        FootageRegistration(ground, first_probes=0)
