"""Each sampled frame's shift against its background, and the warning for a camera that moved."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.camera_motion import (
    AGREEMENT,
    MOVED_SHARE,
    CameraMotion,
    camera_motion,
    frame_shift,
    shifts_of_block,
)
from pipelines.scene_effects import shaken
from pipelines.scene_textures import render_background
from pipelines.synthetic import SceneSpec, render_scene, write_scene
from storage.video_decoder import DecodeOptions, decode_blocks, probe_video
from storage.video_encoder import write_video
from tests.helpers import run_cli


def camera_motion_of(record: dict[str, float]) -> CameraMotion:
    """separation.json's ``camera_motion`` as the object it was made from."""
    return CameraMotion(
        sampled=int(record["sampled_frames"]),
        moved_frames=int(record["moved_frames"]),
        largest_shift_px=float(record["largest_shift_px"]),
    )


def _ground(width: int, height: int, *, seed: int = 0) -> np.ndarray:
    """The synthetic scenes' textured ground, (height, width) uint8."""
    return render_background(SceneSpec(width=width, height=height, n_frames=2, seed=seed))


def _noisy(image: np.ndarray, *, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shift", [(2, -1), (-3, 3), (0, 1), (4, 0)])
def test_a_shaken_frame_gives_its_shift_back(shift: tuple[int, int]) -> None:
    ground = _ground(160, 120)
    frame = _noisy(shaken(ground, shift), sigma=3, seed=1)
    measured = frame_shift(ground, frame)
    assert (measured.dy, measured.dx) == shift
    assert measured.agreed and measured.agreement >= AGREEMENT


def test_a_still_frame_with_noise_and_an_object_stays_put() -> None:
    ground = _ground(160, 120, seed=3)
    frame = _noisy(ground, sigma=4, seed=2)
    frame[30:80, 50:90] = 200  # an object over a sixth of the frame
    measured = frame_shift(ground, frame)
    assert (measured.dy, measured.dx, measured.agreement) == (0, 0, 1.0)
    assert not measured.agreed


def test_a_large_frame_is_measured_on_a_reduced_copy_to_its_factor() -> None:
    """1280x720 is measured at 640x360: the shift comes back to 2 pixels, and far shifts too."""
    ground = _ground(1280, 720, seed=5)
    for shift in [(20, 6), (-8, 0)]:
        measured = frame_shift(ground, _noisy(shaken(ground, shift), sigma=3, seed=6))
        assert abs(measured.dy - shift[0]) <= 2 and abs(measured.dx - shift[1]) <= 2, measured
        assert measured.agreed


def test_a_flat_or_tiny_image_is_not_measured() -> None:
    flat = np.full((120, 160), 90, dtype=np.uint8)
    assert frame_shift(flat, flat).agreement == 0.0
    tiny = _ground(160, 120)[:12, :12]
    measured = frame_shift(tiny, tiny)
    assert (measured.dy, measured.dx, measured.agreement) == (0, 0, 0.0)
    with pytest.raises(ValueError, match="one shape"):
        frame_shift(np.zeros((10, 12)), np.zeros((12, 10)))


def test_shifts_of_a_block_are_rows_of_dy_dx_agreement() -> None:
    ground = _ground(96, 72, seed=7).astype(np.float32)
    frames = np.stack([shaken(ground, (0, 0)), shaken(ground, (2, 1))]).astype(np.uint8)
    rows = shifts_of_block(frames, np.stack([ground, ground]))
    assert rows.shape == (2, 3) and rows.dtype == np.float32
    assert rows[0].tolist() == [0.0, 0.0, 1.0]
    assert rows[1, :2].tolist() == [2.0, 1.0]


def test_the_camera_moved_only_when_more_than_a_share_of_frames_agree() -> None:
    agreed, chance, still = [3.0, -4.0, 1.0], [1.0, 0.0, AGREEMENT - 0.1], [0.0, 0.0, 1.0]
    few = int(MOVED_SHARE * 24)  # at the share: not moved
    at_share = camera_motion([agreed] * few + [still] * (24 - few))
    assert (at_share.moved_frames, at_share.moved, at_share.warning()) == (few, False, None)
    chance_only = camera_motion([chance] * 24)
    assert (chance_only.moved_frames, chance_only.largest_shift_px, chance_only.moved) == (0, 0.0, False)
    moved = camera_motion([agreed] * (few + 1) + [chance] * (23 - few))
    assert moved == CameraMotion(sampled=24, moved_frames=few + 1, largest_shift_px=5.0)
    warning = moved.warning()
    assert warning is not None and "\n" not in warning
    assert f"{few + 1} of 24 sampled frames" in warning and "up to 5 pixels" in warning
    assert camera_motion(np.empty((0, 3))).moved is False


@pytest.mark.parametrize(("jitter", "warned"), [(3, True), (0, False)])
def test_run_warns_of_a_shaking_camera_once_and_records_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], jitter: int, warned: bool
) -> None:
    """A camera shaken by up to 3 pixels at every frame, through the real encoder, and the
    svd model, which does not register frames: one warning line, in separation.json and in
    the report; the same scene with a still camera: none, and 0 frames moved."""
    spec = SceneSpec(width=160, height=120, n_frames=130, n_objects=2, camera_jitter=jitter, seed=11)
    video = tmp_path / "scene.mp4"
    write_scene(spec, video, truth_dir=tmp_path / "truth")
    out = tmp_path / "out"
    status, _, stderr = run_cli(capsys, "run", str(video), "--out", str(out), "--no-videos", "--model", "svd")
    assert status == 0, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("vidsvd: warning: the camera moves")]
    assert len(lines) == (1 if warned else 0), stderr
    separation = json.loads((out / "separation.json").read_text())
    motion = separation["camera_motion"]
    assert motion["sampled_frames"] == 24
    assert (motion["moved_frames"] > MOVED_SHARE * 24) is warned
    if not warned:
        assert motion == {"sampled_frames": 24, "moved_frames": 0, "largest_shift_px": 0.0}
    assert separation.get("camera_warning") == (
        lines[0].removeprefix("vidsvd: warning: ") if warned else None
    )
    report = json.loads((out / "report.json").read_text())["separation"]
    assert report.get("camera_warning") == separation.get("camera_warning")
    assert ("camera warning" in (out / "report.html").read_text()) is warned
    if warned:  # three models measured in one command: the video's camera is told of once
        status, _, stderr = run_cli(
            capsys,
            "evaluate",
            "--store",
            str(out / "store.zarr"),
            "--truth",
            str(tmp_path / "truth"),
            "--format",
            "masks",
            "--models",
            "robust,median,svd",
        )
        assert status == 0, stderr
        assert stderr.count("vidsvd: warning: the camera moves") == 1, stderr
        # a threshold given skips the auto threshold's measure, not the camera's check
        given = tmp_path / "given"
        argv = ["separate", "--store", str(out / "store.zarr"), "--out", str(given), "--model", "svd"]
        status, _, stderr = run_cli(capsys, *argv, "--threshold", "30", "--no-videos")
        assert status == 0, stderr
        assert stderr.count("vidsvd: warning: the camera moves") == 1, stderr
        given_separation = json.loads((given / "separation.json").read_text())
        assert given_separation["threshold_rule"] == "given"
        assert given_separation["camera_motion"] == separation["camera_motion"]
        assert given_separation["camera_warning"] == separation["camera_warning"]


def test_apply_registers_new_footage_that_sits_away_from_the_plate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A still camera's robust background (fitted in chunks of 20 frames, so that apply
    streams blocks of 20) applied to new footage of its scene: footage that stands still
    is not registered; footage knocked by (3, -2) pixels at frame 50 is registered from
    the block the knock falls in, and its masks stay on the objects, where the SVD's
    factors, which are not registered, mark the knocked ground's edges and warn once,
    from the knock's block."""
    spec = SceneSpec(width=160, height=120, n_frames=80, n_objects=3, noise_sigma=3.0, seed=12)
    still = tmp_path / "still.mp4"
    write_scene(spec, still, truth_dir=tmp_path / "truth-still")
    frames, truth = [], []
    for index, (frame, mask) in enumerate(render_scene(spec)):
        moved = (3, -2) if index >= 50 else (0, 0)
        frames.append(shaken(frame, moved))
        truth.append(shaken(mask, moved) > 127)
    knocked = tmp_path / "knocked.mp4"
    write_video(knocked, frames, fps=spec.fps, color=False)
    store = tmp_path / "store.zarr"
    for argv in (
        ["ingest", str(still), "--store", str(store), "--chunk-frames", "20"],
        ["decompose", "--store", str(store), "--rank", "2"],
        ["separate", "--store", str(store), "--out", str(tmp_path / "fitted"), "--no-videos"],
    ):
        status, _, stderr = run_cli(capsys, *argv)
        assert status == 0, stderr
    scores = {}
    for name, extra in (("still", []), ("knocked", []), ("svd", ["--rank", "1"])):
        video = still if name == "still" else knocked
        out = tmp_path / f"applied-{name}"
        argv = ["apply", str(video), "--store", str(store), "--out", str(out), "--masks-video", *extra]
        status, _, stderr = run_cli(capsys, *argv)
        assert status == 0, stderr
        warned = stderr.count("vidsvd: warning: the camera moves")
        registering = re.findall(
            r"probed from frame (\d+) sit away from the background\): registering", stderr
        )
        counted = re.findall(r"registered (\d+) of 80 frames to the background", stderr)
        if name == "knocked":
            assert (warned, registering) == (0, ["40"]), stderr
            assert len(counted) == 1 and 27 <= int(counted[0]) <= 30, stderr
        else:  # the SVD's factors: not registered, the knock told of once, in its block
            assert (warned, registering, counted) == ((1 if name == "svd" else 0), [], []), stderr
        masks = _decoded(out / "masks.mp4") > 127
        scores[name] = _f_measure(
            masks, np.stack(truth) if name != "still" else _truth(tmp_path / "truth-still")
        )
    assert scores["still"] >= 0.97 and scores["knocked"] >= 0.97, scores
    assert scores["svd"] < 0.9, scores  # the knocked ground's edges, unregistered


def _decoded(path: Path) -> np.ndarray:
    """Every frame of a video file, gray uint8 (frame, y, x)."""
    info = probe_video(path)
    options = DecodeOptions(width=info.width, height=info.height)
    return np.concatenate(list(decode_blocks(info, options, block_frames=64)))


def _truth(folder: Path) -> np.ndarray:
    """write_scene's truth masks, every frame, as booleans (frame, y, x)."""
    return np.stack([np.asarray(Image.open(path)) > 127 for path in sorted(folder.glob("*.png"))])


def _f_measure(masks: np.ndarray, truth: np.ndarray) -> float:
    hits = np.count_nonzero(masks & truth)
    return 2 * hits / max(np.count_nonzero(masks) + np.count_nonzero(truth), 1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("video", "moves"),
    [
        ("overhead-pedestrians-720p/overhead_pedestrians_720p.avi", True),  # tilts: 23 pixels over the clip
        ("pets-campus-480x360/vtest.avi", False),
        ("i2r-escalator/escalator.avi", False),  # its steps move at every frame; the camera does not
    ],
)
def test_real_cameras_that_move_are_told_apart_from_still_ones(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], video: str, moves: bool
) -> None:
    """The robust model registers the moving camera's frames, after which nothing is left to
    warn of; the still cameras' frames are not registered, and no frame of theirs moved."""
    out = tmp_path / "out"
    status, _, stderr = run_cli(capsys, "run", str(shared_data / video), "--out", str(out), "--no-videos")
    assert status == 0, stderr
    assert ("registering every frame to the plate" in stderr) is moves
    assert "vidsvd: warning: the camera moves" not in stderr
    separation = json.loads((out / "separation.json").read_text())
    assert not camera_motion_of(separation["camera_motion"]).moved, separation["camera_motion"]
    if moves:
        registered = separation["frames_registered"]
        assert registered["moved_frames"] >= 200 and registered["largest_shift_px"] >= 15, registered
    else:
        assert "frames_registered" not in separation
