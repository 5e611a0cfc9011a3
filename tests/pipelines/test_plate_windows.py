"""A plate per window of a long video: the planner, the fit, its reuse, the CLI and the masks."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipelines.background_models import (
    MIN_WINDOW_FRAMES,
    PLATE_WINDOW_S,
    RankOneBackground,
    plate_windows,
    shown_windows,
    window_factors,
    window_label,
)
from pipelines.cli import arguments
from pipelines.synthetic import MAX_SWEEP, SceneSpec, render_scene, sweeping_shade, write_scene
from storage.derived import open_derived
from storage.errors import InvalidParameterError
from storage.factors import open_factors
from storage.video_array import open_video
from tests.cli_process import own_messages
from tests.helpers import assert_one_line_error, ingested_scene, run_cli, tree_digest

CLUSTER = ("--workers", "1", "--threads-per-worker", "2")
SWEEP = SceneSpec(width=64, height=48, n_frames=200, fps=10.0, n_objects=2, shade_sweep=0.4, seed=5)


def _covers(windows: list[tuple[int, int]], segments: list[tuple[int, int]]) -> bool:
    """Every window inside one segment, and the windows tile the segments in order."""
    edges = [edge for window in windows for edge in window]
    inside = all(any(a <= start < stop <= b for a, b in segments) for start, stop in windows)
    tiled = all(edges[i] == edges[i + 1] for i in range(1, len(edges) - 1, 2))
    return inside and tiled and windows[0][0] == segments[0][0] and windows[-1][1] == segments[-1][1]


def test_the_cli_default_is_the_library_default() -> None:
    assert arguments.PLATE_WINDOW_S == PLATE_WINDOW_S == 600.0


def test_a_clip_shorter_than_the_window_keeps_one_plate_per_source() -> None:
    segments = [(0, 5_000), (5_000, 5_300)]
    assert plate_windows(segments, fps=25.0) == segments  # 200 s and 12 s at 25 fps


def test_a_long_video_gets_near_equal_windows_no_longer_than_asked() -> None:
    windows = plate_windows([(0, 13_000)], fps=10.0)  # 1,300 s: three windows of 433-434 s
    assert len(windows) == 3 and _covers(windows, [(0, 13_000)])
    lengths = [stop - start for start, stop in windows]
    assert max(lengths) - min(lengths) <= 1 and max(lengths) <= 6_000


def test_windows_never_straddle_two_source_videos() -> None:
    segments = [(0, 7_000), (7_000, 7_100), (7_100, 20_000)]
    windows = plate_windows(segments, fps=10.0)
    assert _covers(windows, segments)
    assert (7_000, 7_100) in windows
    assert len(windows) == 2 + 1 + math.ceil(12_900 / 6_000)


def test_a_window_holds_enough_frames_for_a_median() -> None:
    # 300 frames at 1 fps in windows of 60 s would be 5 of 60 frames: 4 of 75 instead
    windows = plate_windows([(0, 300)], fps=1.0, window_s=60.0)
    assert len(windows) == 4 and min(stop - start for start, stop in windows) >= MIN_WINDOW_FRAMES
    assert plate_windows([(0, 10)], fps=10.0, window_s=0.1) == [(0, 10)]  # too short to cut


@pytest.mark.parametrize(
    ("fps", "window_s", "message"),
    [
        (0.0, 600.0, "the frame rate must be a number > 0"),
        (math.nan, 600.0, "the frame rate must be a number > 0"),
        (10.0, -1.0, "--plate-window must be a number of seconds > 0"),
        (10.0, math.inf, "--plate-window must be a number of seconds > 0"),
        (10.0, True, "--plate-window must be a number of seconds > 0"),
    ],
)
def test_a_window_or_rate_that_is_not_a_duration_is_refused(
    fps: float, window_s: float, message: str
) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        plate_windows([(0, 100)], fps=fps, window_s=window_s)


def _background(factors: RankOneBackground) -> np.ndarray:
    return (factors.U.astype(np.float64) * factors.s) @ factors.Vt  # (P, T)


def test_one_window_per_source_is_each_source_plate_times_its_gains() -> None:
    rng = np.random.default_rng(0)
    plates = [rng.uniform(10, 200, 50) for _ in range(2)]
    gains = [rng.uniform(0.8, 1.2, 30), rng.uniform(0.8, 1.2, 20)]
    windows = [(0, 30), (30, 50)]
    background = _background(window_factors(plates, gains, windows, sources=windows, n_frames=50))
    np.testing.assert_allclose(background[:, :30], np.outer(plates[0], gains[0]), rtol=1e-5)
    np.testing.assert_allclose(background[:, 30:], np.outer(plates[1], gains[1]), rtol=1e-5)


def test_windows_of_one_source_blend_from_middle_to_middle_and_sources_never_do() -> None:
    rng = np.random.default_rng(1)
    plates = [np.full(4, 100.0), np.full(4, 60.0), np.full(4, 200.0)]
    gains = [np.ones(40), np.ones(40), rng.uniform(0.9, 1.1, 20)]
    windows = [(0, 40), (40, 80), (80, 100)]  # two windows of the first source, then a second source
    background = _background(
        window_factors(plates, gains, windows, sources=[(0, 80), (80, 100)], n_frames=100)
    )
    middles = (19.5, 59.5)
    expected = np.interp(np.arange(80), middles, [100.0, 60.0])  # the first plate alone until its middle
    np.testing.assert_allclose(background[0, :80], expected, rtol=1e-5)
    assert np.abs(np.diff(background[0, :80])).max() <= 40 / 40 + 1e-4  # no jump at the windows' edge
    np.testing.assert_allclose(
        background[0, 80:], 200.0 * gains[2], rtol=1e-5
    )  # never blended across sources


def test_a_mismatched_count_of_plates_gains_and_windows_is_refused() -> None:
    with pytest.raises(InvalidParameterError, match="one of each per window"):
        window_factors([np.ones(4)], [np.ones(3)] * 2, [(0, 3)], sources=[(0, 3)], n_frames=3)


def test_the_report_shows_a_few_windows_spread_over_the_video() -> None:
    windows = [(i * 10, i * 10 + 10) for i in range(30)]
    shown = shown_windows(windows, most=12)
    assert len(shown) == 12 and shown[0] == windows[0] and shown[-1] == windows[-1]
    assert shown == sorted(shown)
    assert shown_windows(windows[:5], most=12) == windows[:5]
    assert shown_windows(windows, most=1) == [windows[0]]
    with pytest.raises(InvalidParameterError, match="most"):
        shown_windows(windows, most=0)


def test_a_window_is_labelled_by_its_clock_times() -> None:
    assert window_label((0, 4_333), fps=10.0) == "0:00:00-0:07:13"
    assert window_label((36_000, 90_000), fps=25.0) == "0:24:00-1:00:00"


def test_the_sweeping_shade_crosses_the_view_once() -> None:
    first, last = sweeping_shade(SWEEP, 0), sweeping_shade(SWEEP, SWEEP.n_frames - 1)
    assert np.all(first == 1.0)
    np.testing.assert_allclose(last, 1 - SWEEP.shade_sweep, rtol=1e-6)
    middle = sweeping_shade(SWEEP, SWEEP.n_frames // 2)
    assert middle[0] == pytest.approx(0.6) and middle[-1] == 1.0
    assert np.all(np.diff(middle) >= 0)  # dim left of the edge, lit right of it


def test_the_shade_is_background_in_the_truth() -> None:
    lit = SceneSpec(**{**SWEEP.__dict__, "shade_sweep": 0.0})
    for (shaded_frame, shaded_truth), (lit_frame, lit_truth) in zip(
        render_scene(SWEEP), render_scene(lit), strict=True
    ):
        np.testing.assert_array_equal(shaded_truth, lit_truth)
        assert shaded_frame.mean() <= lit_frame.mean() + 1


@pytest.mark.parametrize("value", [-0.1, MAX_SWEEP, math.nan])
def test_a_shade_out_of_range_is_refused(value: float) -> None:
    with pytest.raises(InvalidParameterError, match="shade_sweep"):
        SceneSpec(shade_sweep=value)


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The sweeping scene's video (20 s) and a store holding only its ingest."""
    yield ingested_scene(SWEEP, tmp_path_factory.mktemp("windows"))


def _separated_copy(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], *, model: str = "robust"
) -> tuple[Path, tuple[str, ...]]:
    """Copy the ingested store and separate it with ``--plate-window 5``.

    Returns (the store, the command without its window), for the test to run again.
    """
    store = tmp_path / "s.zarr"
    shutil.copytree(source, store)
    argv = (
        "separate",
        "--store",
        str(store),
        "--model",
        model,
        "--out",
        str(tmp_path / "out"),
        "--no-videos",
    )
    code, _, stderr = run_cli(capsys, *argv, "--quiet", "--plate-window", "5", *CLUSTER)
    assert code == 0, stderr
    return store, (*argv, "--quiet")


@pytest.mark.parametrize("model", ["robust", "median"])
def test_each_window_gets_its_plate_and_a_fit_is_reused_only_for_its_window(
    swept: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], model: str
) -> None:
    store, separate = _separated_copy(swept[1], tmp_path, capsys, model=model)
    video = open_video(store)
    windows = plate_windows(video.segments, fps=video.fps, window_s=5.0)
    assert len(windows) == 3  # 200 frames: 4 windows of 5 s would hold fewer than 64 frames
    fitted = open_factors(store, model)
    assert fitted.rank == 3
    assert fitted.attrs["plate_window_s"] == 5.0
    assert fitted.attrs["windows"] == [list(window) for window in windows]
    vt = np.asarray(fitted.Vt.compute())
    middles = [(start + stop - 1) / 2 for start, stop in windows]
    frames = np.arange(video.n_frames)
    for component in range(len(windows)):  # each plate serves from its neighbours' middles to theirs
        after = middles[component - 1] if component > 0 else -1
        before = middles[component + 1] if component + 1 < len(windows) else video.n_frames
        served = (frames > after) & (frames < before)
        assert np.all(vt[component, served] > 0) and not vt[component, ~served].any()

    code, _, stderr = run_cli(capsys, *separate, "--plate-window", "5", *CLUSTER)
    assert code == 0, stderr
    assert open_factors(store, model).factors_id == fitted.factors_id  # the same window: reused

    code, _, stderr = run_cli(capsys, *separate, *CLUSTER)  # the default window: one plate
    assert code == 0, stderr
    refitted = open_factors(store, model)
    assert refitted.rank == 1 and refitted.attrs["plate_window_s"] == PLATE_WINDOW_S
    assert refitted.factors_id != fitted.factors_id


@pytest.mark.parametrize(
    ("attribute", "recorded"),
    [("windows", [[0, 100], [100, 200]]), ("plate_blend", "none"), ("plate_window_s", None)],
)
def test_factors_of_other_windows_or_another_blend_are_fitted_again(
    swept: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    attribute: str,
    recorded: object,
) -> None:
    """As a version that planned its windows, or blended its plates, another way wrote them."""
    store, separate = _separated_copy(swept[1], tmp_path, capsys)
    fitted = open_factors(store, "robust")
    group = zarr.open_group(str(store / "factors" / "robust"), mode="r+")
    group.attrs.update({attribute: recorded})
    code, _, stderr = run_cli(capsys, *separate, "--plate-window", "5", *CLUSTER)
    assert code == 0, stderr
    refitted = open_factors(store, "robust")
    assert refitted.factors_id != fitted.factors_id
    assert refitted.attrs[attribute] == fitted.attrs[attribute]
    assert open_derived(store, "masks").record.factors_id == refitted.factors_id


@pytest.mark.parametrize("value", ["0", "-5", "soon", "nan"])
def test_a_window_that_is_not_a_duration_is_a_usage_error(
    swept: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    video, store = swept
    before = tree_digest(store)
    for argv in (
        ("separate", "--store", str(store), "--out", str(tmp_path / "a")),
        ("run", str(video), "--store", str(store), "--out", str(tmp_path / "b")),
    ):
        code, _, stderr = run_cli(capsys, *argv, f"--plate-window={value}", "--quiet", *CLUSTER)
        assert code == 2
        assert_one_line_error(stderr, "--plate-window")
    assert tree_digest(store) == before
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_window_for_the_svd_model_is_refused_before_anything_is_written(
    swept: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video, store = swept
    before = tree_digest(store)
    for argv in (
        ("separate", "--store", str(store), "--out", str(tmp_path / "a"), "--model", "svd"),
        ("run", str(video), "--store", str(store), "--out", str(tmp_path / "b"), "--model", "svd"),
    ):
        code, _, stderr = run_cli(capsys, *argv, "--plate-window", "60", "--quiet", *CLUSTER)
        assert code == 2
        assert_one_line_error(stderr, "--plate-window", "svd")
    assert tree_digest(store) == before


def test_scoring_the_models_scores_the_stored_fit_and_keeps_its_windows(
    swept: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`evaluate --models` (and `report --truth`) fit a model only when the store lacks it."""
    store, _ = _separated_copy(swept[1], tmp_path, capsys)
    fitted = open_factors(store, "robust")
    truth = tmp_path / "truth"
    write_scene(SWEEP, tmp_path / "again.mp4", truth_dir=truth, truth_every=20)
    scored = ("--store", str(store), "--truth", str(truth), "--frame-map", str(truth / "frame_map.csv"))
    code, _, stderr = run_cli(capsys, "evaluate", *scored, "--models", "robust,median", "--quiet", *CLUSTER)
    assert code == 0, stderr
    kept = open_factors(store, "robust")
    assert (kept.factors_id, kept.attrs["plate_window_s"]) == (fitted.factors_id, 5.0)
    assert open_factors(store, "median").attrs["plate_window_s"] == PLATE_WINDOW_S  # missing: defaults
    code, _, stderr = run_cli(capsys, "decompose", "--store", str(store), "--rank", "2", "--quiet", *CLUSTER)
    assert code == 0, stderr
    code, _, stderr = run_cli(capsys, "report", *scored, "--out", str(tmp_path / "out"), "--quiet", *CLUSTER)
    assert code == 0, stderr
    assert open_factors(store, "robust").factors_id == fitted.factors_id


def test_apply_uses_every_plate_of_windowed_factors(
    swept: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video, source = swept
    store, _ = _separated_copy(source, tmp_path, capsys)
    code, _, stderr = run_cli(
        capsys, "apply", "--store", str(store), str(video), "--out", str(tmp_path / "new")
    )
    assert code == 0, stderr
    assert "applying factors 'robust' (robust), rank 3" in stderr


@pytest.mark.slow
def test_plates_per_window_follow_a_shade_that_one_plate_cannot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A building's shade sweeps the view: one plate marks it foreground, eight follow it."""
    spec = SceneSpec(width=160, height=120, n_frames=640, fps=10.0, n_objects=4, shade_sweep=0.4, seed=7)
    video, truth = tmp_path / "scene.mp4", tmp_path / "truth"
    write_scene(spec, video, truth_dir=truth, truth_every=8)
    scores = {}
    for label, window in (("one plate", []), ("windows", ["--plate-window", "8"])):
        out = tmp_path / label.replace(" ", "-")
        code, _, stderr = run_cli(
            capsys, "run", str(video), "--out", str(out), "--no-videos", "--quiet", *window, *CLUSTER
        )
        assert code == 0, stderr
        code, stdout, stderr = run_cli(
            capsys, "evaluate", "--store", str(out / "store.zarr"), "--truth", str(truth), "--format", "masks",
            "--frame-map", str(truth / "frame_map.csv"),
        )  # fmt: skip
        assert code == 0, stderr
        row = next(line.split() for line in stdout.splitlines() if line.startswith("vidsvd"))
        scores[label] = float(row[-1])
    assert open_factors(tmp_path / "windows" / "store.zarr", "robust").rank == 8
    # measured: 0.55 and 0.94 (the shade's edge still moves between the windows' middles);
    # 0.36 and 0.90 with --no-shadows, the shade then all foreground
    assert scores["one plate"] < 0.6, scores  # the shade's passage is foreground
    assert scores["windows"] > 0.85, scores


def test_the_python_api_refuses_a_bad_window_in_its_own_words(
    swept: tuple[Path, Path], tmp_path: Path
) -> None:
    import pipelines.api as vidsvd

    video, store = swept
    before = tree_digest(store)
    with pytest.raises(
        InvalidParameterError, match=r"^plate_window_s must be a number of seconds > 0, got -1"
    ):
        vidsvd.run(
            [video],
            out=tmp_path / "out",
            store=store,
            parameters=vidsvd.SvdParameters(rank=1),
            plate_window_s=-1,
        )
    with pytest.raises(InvalidParameterError, match=r"^plate_window_s sets how long each plate"):
        vidsvd.separate(store=store, out=tmp_path / "out", model="svd", plate_window_s=60)
    assert tree_digest(store) == before


@pytest.mark.slow
def test_a_long_video_gets_a_plate_per_ten_minutes_and_only_vidsvds_messages(tmp_path: Path) -> None:
    """22 minutes (13,000 small frames at 10 fps) with defaults, in a process of its own.

    Three plates follow the sweeping shade where one could not (F 0.43 with one plate,
    0.77 with three), and the report's read of its sample frames reuses the frames the job holds:
    reading them from the store in the same graph made distributed warn of keys with
    two definitions.
    """
    spec = SceneSpec(width=64, height=48, n_frames=13_000, fps=10.0, n_objects=3, shade_sweep=0.4, seed=2)
    video, truth, out = tmp_path / "long.mp4", tmp_path / "truth", tmp_path / "job"
    write_scene(spec, video, truth_dir=truth, truth_every=100)
    lines, _ = own_messages(["run", str(video), "--out", str(out), "--no-videos"], timeout_s=300)
    assert any("3 plates of at most 600 s" in line for line in lines)
    fitted = open_factors(out / "store.zarr", "robust")
    assert fitted.rank == 3 and fitted.attrs["windows"] == [[0, 4333], [4333, 8666], [8666, 13000]]
    (shown,) = json.loads((out / "report.json").read_text())["background_models"]
    assert (shown["name"], shown["plates"], shown["windows"]) == ("robust", 3, fitted.attrs["windows"])
    assert "background-plates over time (robust)" in (out / "report.html").read_text()
