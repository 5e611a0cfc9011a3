"""Tests of pipelines.scene_effects: the camera's shake and rain in synthetic scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.cli import main
from pipelines.scene_effects import MAX_JITTER, RAIN_GAIN, camera_shift, rain_streaks, shaken
from pipelines.synthetic import SceneSpec, render_scene
from storage.derived import open_derived
from storage.errors import InvalidParameterError
from storage.factors import open_factors
from tests.helpers import ingested_scene

CLUSTER = ("--workers", "1", "--threads-per-worker", "2")
BASE = {"width": 64, "height": 48, "n_frames": 30, "n_objects": 3, "noise_sigma": 0.0, "seed": 5}


def render(spec: SceneSpec) -> tuple[np.ndarray, np.ndarray]:
    pairs = list(render_scene(spec))
    return np.stack([f for f, _ in pairs]), np.stack([m for _, m in pairs])


def test_shaken_moves_the_content_and_repeats_the_edge() -> None:
    image = np.arange(20, dtype=np.uint8).reshape(4, 5)
    moved = shaken(image, (1, -2))
    np.testing.assert_array_equal(moved[1:, :3], image[:3, 2:])  # content moved down 1, left 2
    np.testing.assert_array_equal(moved[0], moved[1])  # the row that came into view repeats the edge
    np.testing.assert_array_equal(moved[:, 3], moved[:, 2])
    np.testing.assert_array_equal(moved[:, 4], moved[:, 2])
    assert moved.dtype == image.dtype
    assert shaken(image, (0, 0)) is image


def test_the_camera_shakes_the_whole_view_with_its_truth() -> None:
    """Each jittered frame and mask is the still camera's, moved by that frame's shift."""
    still = render(SceneSpec(**BASE))  # type: ignore[arg-type]
    shaking = SceneSpec(**BASE, camera_jitter=2)  # type: ignore[arg-type]
    frames, masks = render(shaking)
    shifts = [camera_shift(shaking, t) for t in range(shaking.n_frames)]
    for t, shift in enumerate(shifts):
        np.testing.assert_array_equal(frames[t], shaken(still[0][t], shift))
        np.testing.assert_array_equal(masks[t], shaken(still[1][t], shift))
    assert all(max(abs(dy), abs(dx)) <= 2 for dy, dx in shifts)
    assert len(set(shifts)) > 10  # a new shift at almost every frame
    assert camera_shift(SceneSpec(**BASE), 3) == (0, 0)  # type: ignore[arg-type]


def test_rain_brightens_short_streaks_and_stays_background() -> None:
    dry = render(SceneSpec(**BASE))  # type: ignore[arg-type]
    rainy_spec = SceneSpec(**BASE, precipitation=0.005)  # type: ignore[arg-type]
    frames, masks = render(rainy_spec)
    np.testing.assert_array_equal(masks, dry[1])  # rain is never foreground
    change = frames.astype(int) - dry[0].astype(int)
    assert change.min() >= 0  # rain only adds light
    wet = change > 0
    assert 0.01 < wet.mean() < 0.05  # 15 drops of 4 pixels on 3,072 pixels, a few clipped
    assert np.max(change) <= RAIN_GAIN
    light = rain_streaks(rainy_spec, 7)
    columns = np.flatnonzero(light.any(axis=0))
    assert 0 < len(columns) <= 15
    runs = [np.flatnonzero(light[:, x]) for x in columns]
    assert all(len(run) >= 2 for run in runs)  # streaks, not dots
    assert not rain_streaks(SceneSpec(**BASE), 7).any()  # type: ignore[arg-type]
    # each frame has its own drops, the same for a seed whatever the order of rendering
    assert not np.array_equal(rain_streaks(rainy_spec, 7), rain_streaks(rainy_spec, 8))
    np.testing.assert_array_equal(light, rain_streaks(rainy_spec, 7))


@pytest.mark.parametrize(
    "options",
    [
        {"camera_jitter": -1},
        {"camera_jitter": MAX_JITTER + 1},
        {"camera_jitter": 1.5},
        {"camera_jitter": True},
        {"precipitation": -0.001},
        {"precipitation": 0.01},
        {"precipitation": float("nan")},
    ],
)
def test_bad_shake_or_rain_raises(options: dict[str, object]) -> None:
    with pytest.raises(InvalidParameterError, match=next(iter(options))):
        SceneSpec(**options)  # type: ignore[arg-type]


def test_the_masks_of_a_shaking_camera_stay_nearly_empty(tmp_path: Path) -> None:
    """Nothing moves but the camera, by up to 2 pixels a frame: every edge of the ground
    changes.  The svd model does not register the frames, and its threshold raised per
    pixel where the video varies keeps the masks almost empty (measured 0.005 %), where
    the same threshold given for every pixel marks the edges (1.0 %).  The robust model
    registers them, with one plate or two, and its masks stay nearly empty with either
    threshold (at most 0.12 %)."""
    scene = SceneSpec(width=96, height=72, n_frames=130, n_objects=0, camera_jitter=2, seed=4)
    _, store = ingested_scene(scene, tmp_path, name="shaking")
    assert main(["decompose", "--store", str(store), "--rank", "1", "--quiet", *CLUSTER]) == 0
    marked: dict[str, float] = {}
    for fit in ("svd", "two plates", "one plate"):
        chosen = {"svd": ("--model", "svd"), "two plates": ("--plate-window", "1"), "one plate": ()}[fit]
        for rule in ("auto", "given"):
            extra: tuple[str, ...] = ()
            if rule == "given":  # the very threshold auto chose, for every pixel
                extra = ("--threshold", f"{open_derived(store, 'masks').record.threshold:.6f}")
            out = tmp_path / f"{fit}-{rule}"
            argv = [
                "separate",
                "--store",
                str(store),
                "--out",
                str(out),
                "--quiet",
                *chosen,
                *extra,
                *CLUSTER,
            ]
            assert main(argv) == 0
            marked[f"{fit} {rule}"] = float((open_derived(store, "masks").data.compute() > 0).mean())
            if fit != "svd":
                assert open_factors(store, "robust").frame_shifts is not None, fit
    assert marked["svd auto"] < 0.002
    assert marked["svd given"] > 4 * max(marked["svd auto"], 0.001)
    for fit in ("two plates", "one plate"):
        assert marked[f"{fit} auto"] < 0.002 and marked[f"{fit} given"] < 0.002, marked
