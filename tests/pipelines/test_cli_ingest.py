"""`vidsvd ingest` on the command line: the happy path, every bad-input row, SIGKILL + resume."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from storage.errors import StoreIncompleteError
from storage.video_array import open_video
from tests.helpers import assert_one_line_error, ffmpeg, run_cli, tree_digest


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status, _, stderr = run_cli(capsys, *argv)
    return status, stderr


def test_ingest_happy_path(make_video, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, frames = make_video(n_frames=12)
    status, stderr = _run(capsys, "ingest", str(path), "--store", str(tmp_path / "s.zarr"))
    assert status == 0
    assert "stored 12 frames of 64x48" in stderr
    assert "ingest" in stderr  # the progress bar went to stderr
    np.testing.assert_array_equal(open_video(tmp_path / "s.zarr").frames.compute(), frames)


def test_a_chosen_zstd_level_is_recorded_and_reads_the_same_frames(
    make_video, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, frames = make_video(n_frames=24, height=96, width=128)
    for level in ("1", "9"):
        store = tmp_path / f"level{level}.zarr"
        assert (
            _run(capsys, "ingest", str(path), "--store", str(store), "--zstd-level", level, "--quiet")[0] == 0
        )
        meta = json.loads((store / "video" / "zarr.json").read_text())
        assert {"name": "zstd", "configuration": {"level": int(level), "checksum": True}} in meta["codecs"]
        np.testing.assert_array_equal(open_video(store).frames.compute(), frames)


def test_quiet_prints_nothing(make_video, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = make_video(n_frames=5)
    status, stderr = _run(capsys, "ingest", str(path), "--store", str(tmp_path / "s.zarr"), "--quiet")
    assert (status, stderr) == (0, "")


@pytest.fixture
def bad_inputs(make_video, tmp_path: Path) -> dict[str, Path]:
    good, _ = make_video("good.mp4", n_frames=60, codec="h264")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    audio = tmp_path / "audio.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", str(audio))
    zero = tmp_path / "zero.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-frames:v", "0", str(zero))
    return {"good": good, "text": text, "audio": audio, "zero": zero, "dir": tmp_path}


@pytest.mark.parametrize(
    ("case", "extra", "status", "fragments"),
    [
        ("missing", [], 1, ["not found"]),
        ("dir", [], 1, ["folder without images", "or a folder of frames"]),  # videos, no images
        ("text", [], 1, ["not a video"]),
        ("audio", [], 1, ["no decodable video stream"]),
        ("zero", [], 1, ["no decodable video stream"]),
        ("good", ["--fps", "0"], 2, ["--fps", "greater than 0"]),
        ("good", ["--fps", "-1"], 2, ["--fps"]),
        ("good", ["--fps", "abc"], 2, ["--fps", "number"]),
        ("good", ["--scale", "0"], 2, ["--scale", "(0, 1]"]),
        ("good", ["--scale", "2"], 2, ["--scale"]),
        ("good", ["--size", "0x10"], 2, ["--size", "positive"]),
        ("good", ["--size", "big"], 2, ["--size", "WIDTHxHEIGHT"]),
        ("good", ["--chunk-frames", "0"], 2, ["--chunk-frames"]),
        ("good", ["--zstd-level", "0"], 2, ["--zstd-level"]),
        ("good", ["--zstd-level", "20"], 2, ["--zstd-level", "1-19"]),
        ("good", ["--overwrite", "--resume"], 2, ["not allowed"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    bad_inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case,
    extra,
    status,
    fragments,
) -> None:
    source = tmp_path / "missing.mp4" if case == "missing" else bad_inputs[case]
    store = tmp_path / "out.zarr"
    code, stderr = _run(capsys, "ingest", str(source), "--store", str(store), "--quiet", *extra)
    assert code == status
    assert_one_line_error(stderr, *fragments)
    assert not store.exists()


def test_unwritable_store_location(bad_inputs: dict[str, Path], tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, stderr = _run(
        capsys, "ingest", str(bad_inputs["good"]), "--store", str(blocker / "s.zarr"), "--quiet"
    )
    assert code == 1
    assert_one_line_error(stderr, "writable")


def test_existing_store_without_overwrite_is_untouched(bad_inputs, tmp_path: Path, capsys) -> None:
    store = tmp_path / "s.zarr"
    assert _run(capsys, "ingest", str(bad_inputs["good"]), "--store", str(store), "--quiet")[0] == 0
    before = tree_digest(store)
    code, stderr = _run(
        capsys, "ingest", str(bad_inputs["good"]), "--store", str(store), "--fps", "2", "--quiet"
    )
    assert code == 1
    assert_one_line_error(stderr, "--overwrite")
    assert tree_digest(store) == before
    # a bad source with --overwrite must not destroy the existing store either
    code, stderr = _run(
        capsys, "ingest", str(bad_inputs["text"]), "--store", str(store), "--overwrite", "--quiet"
    )
    assert code == 1
    assert tree_digest(store) == before


def test_store_that_is_not_ours(bad_inputs, tmp_path: Path, capsys) -> None:
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("\\section{Intro}")
    before = tree_digest(foreign)
    code, stderr = _run(
        capsys, "ingest", str(bad_inputs["good"]), "--store", str(foreign), "--overwrite", "--quiet"
    )
    assert code == 1
    assert_one_line_error(stderr, "not a vidsvd store")
    assert tree_digest(foreign) == before


def test_truncated_video_warns_with_frame_count(bad_inputs, tmp_path: Path, capsys) -> None:
    data = bad_inputs["good"].read_bytes()
    half = tmp_path / "half.mp4"
    half.write_bytes(data[: len(data) // 2])
    code, stderr = _run(capsys, "ingest", str(half), "--store", str(tmp_path / "s.zarr"), "--quiet")
    assert code == 0
    (warning,) = [line for line in stderr.splitlines() if line.strip()]
    assert warning.startswith("vidsvd: warning:") and "decoded" in warning and "truncated" in warning
    assert 0 < open_video(tmp_path / "s.zarr").n_frames < 60


def _ingest_command(video: Path, store: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipelines.cli",
        "ingest",
        str(video),
        "--store",
        str(store),
        "--chunk-frames",
        "3",
        "--quiet",
        *extra,
    ]


@pytest.fixture
def long_video(make_video) -> Path:
    path, _ = make_video("long.mkv", n_frames=400, height=120, width=160)
    return path


def _kill_resume_and_compare(
    long_video: Path, tmp_path: Path, reference: np.ndarray, delay_s: float, index: int
) -> bool:
    """Kill an ingest after ``delay_s``, resume it, compare; True when the kill left it incomplete."""
    store = tmp_path / f"killed{index}.zarr"
    process = subprocess.Popen(_ingest_command(long_video, store), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (store / "video" / "zarr.json").exists() and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    if delay_s < 0:  # kill right after the first chunk is recorded: surely mid-ingest
        while process.poll() is None and '"frames_written": 0,' in _metadata_text(store):
            assert time.monotonic() < deadline
            time.sleep(0.001)
    else:
        time.sleep(delay_s)
    process.send_signal(signal.SIGKILL)
    process.wait()
    interrupted = store.exists() and not _is_complete(store)
    if interrupted:
        with pytest.raises(StoreIncompleteError):
            open_video(store)
        refused = subprocess.run(_ingest_command(long_video, store), capture_output=True, text=True)
        assert refused.returncode == 1 and "--resume" in refused.stderr
    if not _is_complete(store):
        resumed = subprocess.run(
            _ingest_command(long_video, store, "--resume"), capture_output=True, text=True
        )
        assert resumed.returncode == 0, resumed.stderr
    np.testing.assert_array_equal(open_video(store).frames.compute(), reference)
    return interrupted


def _metadata_text(store: Path) -> str:
    try:
        return (store / "video" / "zarr.json").read_text()
    except OSError:
        return '"frames_written": 0,'


def _is_complete(store: Path) -> bool:
    try:
        open_video(store)
    except (StoreIncompleteError, FileNotFoundError):
        return False
    return True


def _reference(long_video: Path, tmp_path: Path) -> tuple[np.ndarray, float]:
    """The uninterrupted result and how long its ingest ran once the store existed."""
    subprocess.run(_ingest_command(long_video, tmp_path / "ref.zarr"), check=True)
    video = open_video(tmp_path / "ref.zarr")
    return video.frames.compute(), float(video.attrs["ingest_wall_time_s"])


def test_sigkill_then_resume_gives_identical_bytes(long_video: Path, tmp_path: Path) -> None:
    reference, _ = _reference(long_video, tmp_path)
    assert _kill_resume_and_compare(long_video, tmp_path, reference, -1.0, 0)


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume(long_video: Path, tmp_path: Path) -> None:
    reference, duration = _reference(long_video, tmp_path)
    rng = random.Random(int(os.environ.get("VIDSVD_KILL_SEED", "2026")))
    outcomes = [
        _kill_resume_and_compare(long_video, tmp_path, reference, rng.uniform(0.0, 1.0) * duration, index)
        for index in range(8)
    ]
    assert sum(outcomes) >= 4, f"too few kills landed during the ingest: {outcomes}"


@pytest.mark.slow
def test_notebook_video_equals_ffmpeg_gray_decode(shared_data: Path, tmp_path: Path, capsys) -> None:
    from storage.video_decoder import ffmpeg_executable

    video = shared_data / "bmc2012-video003" / "Video_003.avi"
    assert _run(capsys, "ingest", str(video), "--store", str(tmp_path / "s.zarr"), "--quiet")[0] == 0
    stored = open_video(tmp_path / "s.zarr").frames.compute()
    assert stored.shape == (794, 240, 320)
    raw = subprocess.run(
        [
            ffmpeg_executable(),
            "-v",
            "error",
            "-i",
            str(video),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "pipe:1",
        ],
        check=True,
        capture_output=True,
    ).stdout
    np.testing.assert_array_equal(stored.ravel(), np.frombuffer(raw, np.uint8))
    assert (
        _run(
            capsys,
            "ingest",
            str(video),
            "--store",
            str(tmp_path / "half.zarr"),
            "--fps",
            "5",
            "--scale",
            "0.5",
            "--quiet",
        )[0]
        == 0
    )
    small = open_video(tmp_path / "half.zarr")
    assert small.frames.shape[1:] == (120, 160)
    assert abs(small.n_frames - 568) <= 2


@pytest.mark.slow
def test_two_real_videos_of_different_sizes(shared_data: Path, tmp_path: Path, capsys) -> None:
    first = shared_data / "bmc2012-video003" / "Video_003.avi"
    second = shared_data / "bgslibrary" / "video.avi"  # 640x360, scaled to 320x240
    assert (
        _run(capsys, "ingest", str(first), str(second), "--store", str(tmp_path / "s.zarr"), "--quiet")[0]
        == 0
    )
    video = open_video(tmp_path / "s.zarr")
    assert video.frames.shape[1:] == (240, 320)
    assert video.segments[0] == (0, 794)
    assert video.segments[1][0] == 794 and video.segments[1][1] == video.n_frames
    assert [s["native_width"] for s in video.attrs["sources"]] == [320, 640]
