"""Tests of pipelines.synthetic: the scene generator, its ground truth and its files."""

from __future__ import annotations

import csv
import inspect
import itertools
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from pipelines.scene_objects import SHADOW_OFFSET, make_objects, shadow_cover
from pipelines.scene_textures import sway_region
from pipelines.synthetic import (
    BACKGROUND_RANGE,
    MIN_CONTRAST,
    SHADOW_TRUTH,
    SceneSpec,
    illumination_gain,
    render_background,
    render_scene,
    write_scene,
)
from storage.errors import InvalidParameterError, SourceNotFoundError
from storage.truth import FRAME_MAP_NAME, read_truth_masks
from storage.video_decoder import DecodeOptions, decode_blocks, probe_video

SMALL = SceneSpec(width=64, height=48, n_frames=40)
CLEAN = SceneSpec(width=64, height=48, n_frames=40, noise_sigma=0.0)


def render(spec: SceneSpec) -> tuple[np.ndarray, np.ndarray]:
    pairs = list(render_scene(spec))
    return np.stack([f for f, _ in pairs]), np.stack([m for _, m in pairs])


def decode_all(path: Path) -> np.ndarray:
    info = probe_video(path)
    options = DecodeOptions(width=info.width, height=info.height)
    return np.concatenate(list(decode_blocks(info, options, block_frames=16)))


def test_frames_and_masks_have_the_right_shape_and_values() -> None:
    frames, masks = render(SMALL)
    assert frames.shape == masks.shape == (40, 48, 64)
    assert frames.dtype == masks.dtype == np.uint8
    assert set(np.unique(masks).tolist()) == {0, 255}
    fraction = (masks > 0).mean()
    assert 0.02 < fraction < 0.5


def test_deterministic_for_a_seed() -> None:
    frames_a, masks_a = render(SMALL)
    frames_b, masks_b = render(SMALL)
    np.testing.assert_array_equal(frames_a, frames_b)
    np.testing.assert_array_equal(masks_a, masks_b)
    frames_c, masks_c = render(SceneSpec(width=64, height=48, n_frames=40, seed=1))
    assert not np.array_equal(frames_a, frames_c)
    assert not np.array_equal(masks_a, masks_c)


def test_noise_is_independent_of_the_other_options() -> None:
    """Same seed, same backgrounds and objects whatever the length of the scene."""
    short, short_masks = render(SceneSpec(width=64, height=48, n_frames=10))
    long, long_masks = render(SceneSpec(width=64, height=48, n_frames=40))
    np.testing.assert_array_equal(short, long[:10])
    np.testing.assert_array_equal(short_masks, long_masks[:10])


def test_mask_is_exactly_the_object_pixels_with_enough_contrast() -> None:
    frames, masks = render(CLEAN)
    background = render_background(CLEAN).astype(np.int16)
    for frame, mask in zip(frames, masks, strict=True):
        still = mask == 0
        np.testing.assert_array_equal(frame[still], background[still])
        difference = np.abs(frame.astype(np.int16) - background)[~still]
        assert difference.size > 0
        assert difference.min() >= MIN_CONTRAST >= 40


def test_shadows_dim_the_background_and_are_scored_as_background() -> None:
    """Each object's shadow darkens the ground beside it; truth marks it 50, not 255."""
    strength = 0.5
    spec = SceneSpec(width=96, height=72, n_frames=12, noise_sigma=0.0, shadow_strength=strength, seed=3)
    plain = SceneSpec(width=96, height=72, n_frames=12, noise_sigma=0.0, seed=3)
    frames, masks = render(spec)
    plain_frames, plain_masks = render(plain)
    background = render_background(spec).astype(np.float32)
    objects = make_objects(spec)
    np.testing.assert_array_equal(masks == 255, plain_masks == 255)  # objects unchanged
    assert set(np.unique(masks).tolist()) == {0, SHADOW_TRUTH, 255}
    for t, (frame, mask) in enumerate(zip(frames, masks, strict=True)):
        cover = shadow_cover(objects, t, height=72, width=96)
        ground = mask != 255
        expected = np.rint(background * (1 - strength * cover)).astype(np.uint8)
        np.testing.assert_array_equal(frame[ground], expected[ground])
        np.testing.assert_array_equal(mask == SHADOW_TRUTH, (cover >= 0.5) & ground)
        np.testing.assert_array_equal(frame[mask == 255], plain_frames[t][mask == 255])
    assert (masks == SHADOW_TRUTH).mean() > 0.02


def test_a_shadow_falls_down_and_right_of_its_object() -> None:
    spec = SceneSpec(
        width=96, height=72, n_frames=1, noise_sigma=0.0, n_objects=1, shadow_strength=0.4, seed=2
    )
    (obj,) = make_objects(spec)
    y, x = obj.top_left(0, height=72, width=96)
    h, w = obj.shape.shape
    cover = shadow_cover([obj], 0, height=72, width=96)
    ys, xs = np.nonzero(cover >= 0.5)
    assert ys.size > 0
    assert ys.min() == max(y + round(SHADOW_OFFSET[0] * h), 0)
    assert xs.min() == max(x + round(SHADOW_OFFSET[1] * w), 0)
    assert np.all((cover >= 0) & (cover <= 1))


def test_shadows_are_not_counted_as_foreground(tmp_path: Path) -> None:
    shaded = SceneSpec(width=64, height=48, n_frames=10, shadow_strength=0.6)
    plain = SceneSpec(width=64, height=48, n_frames=10)
    written = write_scene(shaded, tmp_path / "shaded.mkv", codec="ffv1", truth_dir=tmp_path / "gt")
    reference = write_scene(plain, tmp_path / "plain.mkv", codec="ffv1")
    assert written.foreground_fraction == reference.foreground_fraction > 0
    stored = np.stack([np.asarray(Image.open(tmp_path / "gt" / f"{t:06d}.png")) for t in range(10)])
    assert np.any(stored == SHADOW_TRUTH)


def test_camouflaged_patches_show_the_ground_but_belong_to_the_object() -> None:
    """One object, so that what its patch shows is the ground (with several, it may be another)."""
    spec = SceneSpec(width=96, height=72, n_frames=12, n_objects=1, noise_sigma=0.0, camouflage=0.5, seed=4)
    plain = SceneSpec(width=96, height=72, n_frames=12, n_objects=1, noise_sigma=0.0, seed=4)
    frames, masks = render(spec)
    plain_frames, plain_masks = render(plain)
    np.testing.assert_array_equal(masks, plain_masks)  # the truth is the same objects
    background = render_background(spec)
    objects = masks == 255
    shows_ground = objects & (frames == background) & (plain_frames != background)
    assert shows_ground.sum() > 0.1 * objects.sum()  # patches of about a quarter of each object
    painted = objects & ~shows_ground
    np.testing.assert_array_equal(frames[painted], plain_frames[painted])
    np.testing.assert_array_equal(frames[~objects], plain_frames[~objects])
    for obj in make_objects(spec):
        assert obj.see_through.any() and not obj.see_through[~obj.shape].any()
    assert not any(obj.see_through.any() for obj in make_objects(plain))


def test_noise_has_the_requested_sigma() -> None:
    spec = SceneSpec(width=64, height=48, n_frames=10, noise_sigma=3.0, n_objects=0)
    frames, _ = render(spec)
    residual = frames.astype(np.float64) - render_background(spec)
    assert residual.std() == pytest.approx(3.0, rel=0.05)


def test_objects_move() -> None:
    _, masks = render(SMALL)
    changed = [not np.array_equal(masks[t], masks[t + 1]) for t in range(len(masks) - 1)]
    assert all(changed)
    ys, xs = np.nonzero(masks[0])
    ye, xe = np.nonzero(masks[20])
    assert abs(xs.mean() - xe.mean()) + abs(ys.mean() - ye.mean()) > 3


def test_a_crossing_object_enters_and_leaves_the_frame() -> None:
    spec = SceneSpec(width=64, height=48, n_frames=150, n_objects=1)
    _, masks = render(spec)
    touches_edge = masks[:, :, 0].any(axis=1) | masks[:, :, -1].any(axis=1)
    inside = masks.any(axis=(1, 2)) & ~touches_edge
    assert touches_edge.any()
    assert inside.any()


def test_objects_have_different_sizes() -> None:
    _, masks = render(CLEAN)
    labels, count = ndimage.label(masks[0] > 0)
    assert count >= 2
    sizes = np.bincount(labels.ravel())[1:]
    assert len(set(sizes.tolist())) == len(sizes)


def test_no_objects_means_an_empty_mask() -> None:
    _, masks = render(SceneSpec(width=64, height=48, n_frames=5, n_objects=0))
    assert not masks.any()


def test_cut_changes_the_background() -> None:
    spec = SceneSpec(width=64, height=48, n_frames=40, cut_at=25, noise_sigma=0.0)
    first, second = render_background(spec, 0), render_background(spec, 1)
    assert np.abs(first.astype(np.int16) - second).mean() > 10
    frames, masks = render(spec)
    for t in (0, 24, 25, 39):
        expected = first if t < 25 else second
        still = masks[t] == 0
        np.testing.assert_array_equal(frames[t][still], expected[still])
    assert spec.segment_of(24) == 0
    assert spec.segment_of(25) == 1
    # the masks do not depend on the cut: the objects carry on
    _, uncut_masks = render(SceneSpec(width=64, height=48, n_frames=40, noise_sigma=0.0))
    np.testing.assert_array_equal(masks, uncut_masks)


def test_background_is_textured_and_in_range() -> None:
    background = render_background(SceneSpec())
    assert background.shape == (120, 160)
    assert background.dtype == np.uint8
    assert (int(background.min()), int(background.max())) == BACKGROUND_RANGE
    assert background.std() > 10
    assert np.abs(np.diff(background.astype(np.int16), axis=1)).max() >= 5  # some edges


def test_ground_contrast_pulls_the_background_s_texture_towards_its_mean() -> None:
    textured = render_background(SceneSpec()).astype(np.float64)
    weak = render_background(SceneSpec(ground_contrast=0.25)).astype(np.float64)
    assert weak.std() == pytest.approx(0.25 * textured.std(), rel=0.05)
    assert weak.mean() == pytest.approx(textured.mean(), abs=0.5)
    assert np.corrcoef(weak.ravel(), textured.ravel())[0, 1] > 0.99  # the same pattern, fainter


def test_illumination_drift_changes_the_mean_brightness() -> None:
    spec = SceneSpec(width=64, height=48, n_frames=40, illumination_drift=0.2, n_objects=0, noise_sigma=0.0)
    frames, _ = render(spec)
    means = frames.mean(axis=(1, 2))
    base = render_background(spec).mean()
    assert means[10] == pytest.approx(1.2 * base, rel=0.01)
    assert means[30] == pytest.approx(0.8 * base, rel=0.01)
    assert means[0] == pytest.approx(base, rel=0.01)
    assert illumination_gain(spec, 10) == pytest.approx(1.2)
    steady, _ = render(SceneSpec(width=64, height=48, n_frames=40, n_objects=0, noise_sigma=0.0))
    assert np.ptp(steady.mean(axis=(1, 2))) == 0


def test_render_scene_streams() -> None:
    spec = SceneSpec(width=64, height=48, n_frames=10**7)
    assert inspect.isgeneratorfunction(render_scene)
    stream = render_scene(spec)
    start = time.perf_counter()
    frame, mask = next(stream)
    assert time.perf_counter() - start < 2.0
    assert frame.shape == mask.shape == (48, 64)
    stream.close()


@pytest.mark.parametrize(
    "options",
    [
        {"width": 8},
        {"height": 10.5},
        {"n_frames": 0},
        {"fps": 0.0},
        {"fps": float("inf")},
        {"n_objects": -1},
        {"noise_sigma": -1.0},
        {"illumination_drift": 0.5},
        {"illumination_drift": -0.1},
        {"cut_at": 0},
        {"cut_at": 120},
        {"seed": -1},
        {"seed": True},
        {"pause_fraction": 1.0},
        {"pause_fraction": -0.1},
        {"stop_in_turn": 1},
        {"stop_in_turn": True, "n_objects": 6, "pause_fraction": 0.34},
        {"noise_spread": 1.0},
        {"noise_spread": float("nan")},
        {"object_contrast": 0.0},
        {"object_contrast": 1.5},
        {"swaying_fraction": 0.5},
        {"swaying_fraction": -0.1},
        {"swaying_fraction": float("nan")},
        {"shadow_strength": 0.8},
        {"camouflage": 0.8},
        {"camouflage": -0.2},
        {"camouflage": float("nan")},
        {"shadow_strength": -0.1},
        {"shadow_strength": float("inf")},
        {"ground_contrast": 0.0},
        {"ground_contrast": 1.5},
        {"ground_contrast": float("nan")},
    ],
)
def test_bad_spec_raises(options: dict[str, object]) -> None:
    with pytest.raises(InvalidParameterError):
        SceneSpec(**options)  # type: ignore[arg-type]


def test_render_background_segment_must_be_0_or_1() -> None:
    with pytest.raises(InvalidParameterError, match="segment"):
        render_background(SMALL, 2)


def test_write_scene_ffv1_is_exact_and_truth_reads_back(tmp_path: Path) -> None:
    spec = SceneSpec(width=64, height=48, n_frames=30, cut_at=20)
    video = tmp_path / "scene.mkv"
    truth_dir = tmp_path / "truth"
    truth = write_scene(spec, video, codec="ffv1", truth_dir=truth_dir)
    frames, masks = render(spec)

    np.testing.assert_array_equal(decode_all(video), frames)
    assert probe_video(video).fps == pytest.approx(spec.fps)
    assert truth.n_frames == 30
    assert truth.video_path == video
    assert truth.codec == "ffv1"
    assert truth.truth_dir == truth_dir
    assert truth.frame_map_path == truth_dir / FRAME_MAP_NAME
    assert truth.mask_frames == tuple(range(30))
    assert truth.foreground_fraction == pytest.approx((masks > 0).mean())

    with (truth_dir / FRAME_MAP_NAME).open(newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["mask", "frame"]
    assert rows[1] == ["000000.png", "0"]
    assert len(rows) == 31
    assert sorted(p.name for p in truth_dir.glob("*.png")) == [f"{t:06d}.png" for t in range(30)]
    with Image.open(truth_dir / "000007.png") as image:
        assert image.mode == "L"

    read = read_truth_masks(truth_dir)
    assert [t for t, _ in read] == list(range(30))
    for t, mask in read:
        assert mask.dtype == np.uint8
        np.testing.assert_array_equal(mask, masks[t])


def test_write_scene_every_kth_mask(tmp_path: Path) -> None:
    spec = SceneSpec(width=64, height=48, n_frames=20)
    truth = write_scene(spec, tmp_path / "s.mkv", codec="ffv1", truth_dir=tmp_path / "gt", truth_every=6)
    assert truth.mask_frames == (0, 6, 12, 18)
    _, masks = render(spec)
    read = dict(read_truth_masks(tmp_path / "gt"))
    assert sorted(read) == [0, 6, 12, 18]
    for t, mask in read.items():
        np.testing.assert_array_equal(mask, masks[t])


def test_write_scene_h264(tmp_path: Path) -> None:
    spec = SceneSpec(width=64, height=48, n_frames=24)
    video = tmp_path / "scene.mp4"
    truth = write_scene(spec, video)
    assert truth.truth_dir is None
    assert truth.frame_map_path is None
    assert truth.mask_frames == ()
    info = probe_video(video)
    assert (info.codec, info.width, info.height) == ("h264", 64, 48)
    decoded = decode_all(video)
    frames, _ = render(spec)
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(np.int16) - frames).mean() < 4.0


def test_write_scene_h264_needs_even_sizes(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="even"):
        write_scene(SceneSpec(width=65, height=48, n_frames=5), tmp_path / "odd.mp4")
    write_scene(SceneSpec(width=65, height=47, n_frames=5), tmp_path / "odd.mkv", codec="ffv1")
    assert probe_video(tmp_path / "odd.mkv").width == 65


def test_write_scene_rejects_bad_truth_every(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="truth_every"):
        write_scene(SMALL, tmp_path / "s.mkv", codec="ffv1", truth_dir=tmp_path, truth_every=0)


def test_interrupted_truth_is_recognisable(tmp_path: Path) -> None:
    spec = SceneSpec(width=64, height=48, n_frames=6)
    truth_dir = tmp_path / "gt"
    write_scene(spec, tmp_path / "s.mkv", codec="ffv1", truth_dir=truth_dir)
    assert len(read_truth_masks(truth_dir)) == 6
    with pytest.raises(InvalidParameterError):  # wrong suffix: the video fails
        write_scene(spec, tmp_path / "s.webm", codec="ffv1", truth_dir=truth_dir)
    assert not (truth_dir / FRAME_MAP_NAME).exists()
    with pytest.raises(SourceNotFoundError, match=FRAME_MAP_NAME) as caught:
        read_truth_masks(truth_dir)
    assert isinstance(caught.value, FileNotFoundError)


def test_the_truth_reader_checks_the_header(tmp_path: Path) -> None:
    (tmp_path / FRAME_MAP_NAME).write_text("file,index\n")
    with pytest.raises(InvalidParameterError, match="needs a mask column"):
        read_truth_masks(tmp_path)


def _temporal_median_error(spec: SceneSpec) -> int:
    """Pixels where the per-pixel temporal median misses the clean background by > 10."""
    frames = np.stack([frame for frame, _ in render_scene(spec)])
    median = np.median(frames, axis=0)
    return int(np.count_nonzero(np.abs(median - render_background(spec)) > 10))


def test_walkers_that_stop_for_over_half_the_clip_fool_a_temporal_median() -> None:
    """pause_fraction makes people stand still; above one half they become the median's background."""
    base = {"width": 64, "height": 48, "n_frames": 80, "n_objects": 2, "noise_sigma": 0.0, "seed": 5}
    assert _temporal_median_error(SceneSpec(**base)) == 0  # type: ignore[arg-type]
    assert _temporal_median_error(SceneSpec(**base, pause_fraction=0.3)) == 0  # type: ignore[arg-type]
    standing = _temporal_median_error(SceneSpec(**base, pause_fraction=0.7))  # type: ignore[arg-type]
    assert standing > 0.5 * 0.2 * 48 * 0.07 * 64  # at least half of the smallest walker's box
    # without pauses the scene renders exactly as before the option existed
    spec = SceneSpec(**base)  # type: ignore[arg-type]
    again = SceneSpec(  # type: ignore[arg-type]
        **base, pause_fraction=0.0, noise_spread=0.0, object_contrast=1.0, swaying_fraction=0.0
    )
    for (a, _), (b, _) in zip(render_scene(spec), render_scene(again), strict=True):
        np.testing.assert_array_equal(a, b)


def test_noise_spread_varies_the_noise_over_the_image() -> None:
    def noise_scale(spread: float) -> np.ndarray:
        spec = SceneSpec(width=64, height=48, n_frames=60, n_objects=0, noise_sigma=4.0, noise_spread=spread)
        frames = np.stack([frame for frame, _ in render_scene(spec)]).astype(float)
        return frames.std(axis=0)

    even, spread = noise_scale(0.0), noise_scale(0.6)
    assert np.percentile(even, 90) / np.percentile(even, 10) < 1.4
    assert np.percentile(spread, 90) / np.percentile(spread, 10) > 2.0
    assert abs(np.mean(spread) - 4.0) < 1.0  # the same noise on average


def test_swaying_foliage_moves_and_is_background() -> None:
    spec = SceneSpec(width=80, height=60, n_frames=30, n_objects=0, noise_sigma=0.0, swaying_fraction=0.2)
    frames, truth = render(spec)
    leaves = sway_region(spec, spec.swaying_fraction)
    assert 0.15 < leaves.mean() < 0.25
    change = np.abs(np.diff(frames.astype(float), axis=0)).mean(axis=0)
    assert change[leaves].mean() > 10 and change[~leaves].max() < change[leaves].mean() / 2
    assert not truth.any()  # leaves are background, however they move
    # the clean background holds the foliage at rest
    assert np.count_nonzero(frames == render_background(spec)) > 0.7 * frames.size


def test_object_contrast_pulls_objects_towards_grey() -> None:
    base = {"width": 64, "height": 48, "n_frames": 10, "n_objects": 2, "noise_sigma": 0.0, "seed": 2}
    full, truth = render(SceneSpec(**base))  # type: ignore[arg-type]
    half, _ = render(SceneSpec(**base, object_contrast=0.5))  # type: ignore[arg-type]
    on = truth == 255
    np.testing.assert_array_equal(half[~on], full[~on])
    np.testing.assert_allclose(half[on].astype(float), 128 + 0.5 * (full[on].astype(float) - 128), atol=0.51)


def test_walkers_that_stop_in_turn_stand_at_one_place_one_after_another() -> None:
    """stop_in_turn: each walker stands at the same place for its share, the stops apart in time."""
    spec = SceneSpec(
        width=64, height=48, n_frames=90, n_objects=6, pause_fraction=0.2, stop_in_turn=True, seed=3
    )
    walkers = [obj for obj in make_objects(spec) if not obj.crosses]
    assert len(walkers) == 3
    length = round(0.2 * 90)
    starts = [walker.pause_start for walker in walkers]
    assert [walker.pause_length for walker in walkers] == [length] * 3
    assert all(b - a > length for a, b in itertools.pairwise(starts))  # one after another
    for walker in walkers:  # standing, each walker's feet are at the shared place, centred
        h, w = walker.shape.shape
        stands = {
            walker.top_left(t, height=48, width=64)
            for t in range(walker.pause_start, walker.pause_start + length)
        }
        assert stands == {(round(0.75 * 48) - h, (64 - w) // 2)}
        # it walks in and out: before and after its stop it is elsewhere
        assert walker.top_left(walker.pause_start - 5, height=48, width=64) not in stands
        assert walker.top_left(walker.pause_start + length + 5, height=48, width=64) not in stands
    # the place is taken for 60 % of the clip by three objects that look different: the
    # median keeps one of them there, where the same stops at random places would not
    frames = np.stack([frame for frame, _ in render_scene(spec)])
    foot_y = round(0.75 * 48) - 2
    place = np.abs(np.median(frames, axis=0) - render_background(spec))[foot_y, 30:34]
    assert place.min() > 10
    apart = SceneSpec(width=64, height=48, n_frames=90, n_objects=6, pause_fraction=0.2, seed=3)
    assert [obj.pause_start for obj in make_objects(apart) if not obj.crosses] != starts
