"""Ingest: real videos through the real codec into STORE/video."""

from __future__ import annotations

import errno
import hashlib
import json
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

from storage.errors import (
    InvalidParameterError,
    NotAVidsvdStoreError,
    SourceNotReadableError,
    StoreExistsError,
    StoreIncompleteError,
)
from storage.video_array import open_video
from storage.video_decoder import ffmpeg_executable, probe_video
from storage.video_ingest import IngestWarning, default_chunk_frames, ingest_videos
from tests.helpers import assert_one_line_error, ffmpeg, run_cli


def _ffmpeg_gray(path: Path, *extra: str) -> np.ndarray:
    raw = subprocess.run(
        [
            ffmpeg_executable(),
            "-v",
            "error",
            "-i",
            str(path),
            *extra,
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "pipe:1",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.uint8)


def test_lossless_video_round_trips_exactly(make_video, tmp_path: Path) -> None:
    path, frames = make_video(n_frames=30)
    summary = ingest_videos([path], store=tmp_path / "s.zarr", progress=False)
    video = open_video(tmp_path / "s.zarr")
    assert summary.shape == (30, 48, 64)
    assert video.frames.dtype == np.uint8
    np.testing.assert_array_equal(video.frames.compute(), frames)


def test_array_layout_and_attributes(make_video, tmp_path: Path) -> None:
    path, _ = make_video(n_frames=25)
    ingest_videos([path], store=tmp_path / "s.zarr", chunk_frames=10, progress=False)
    array = zarr.open_array(tmp_path / "s.zarr" / "video", mode="r")
    assert array.metadata.dimension_names == ("frame", "y", "x")
    assert array.chunks == (10, 48, 64)
    assert "zstd" in json.dumps(array.metadata.to_dict()["codecs"]).lower()
    attrs = array.attrs
    assert attrs["complete"] is True
    (source,) = attrs["sources"]
    assert source["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert source["size_bytes"] == path.stat().st_size
    assert source["frame_range"] == [0, 25]
    assert source["native_width"] == 64 and source["native_height"] == 48
    assert source["codec"] == "ffv1"
    assert source["native_fps"] == pytest.approx(10.0)
    assert attrs["segments"] == [[0, 25]]
    assert attrs["ingest"]["ffmpeg"]
    assert set(attrs["versions"]) >= {"numpy", "zarr", "dask", "imageio-ffmpeg"}
    assert attrs["ingest"]["chunk_frames"] == 10
    assert len(attrs["fingerprint"]) == 64


def test_h264_equals_ffmpeg_gray_decode_byte_for_byte(make_video, tmp_path: Path) -> None:
    path, _ = make_video("clip.mp4", n_frames=24, codec="h264")
    ingest_videos([path], store=tmp_path / "s.zarr", progress=False)
    stored = open_video(tmp_path / "s.zarr").frames.compute()
    np.testing.assert_array_equal(stored.ravel(), _ffmpeg_gray(path))


def test_fps_and_scale_are_done_by_ffmpeg(make_video, tmp_path: Path) -> None:
    path, _ = make_video(n_frames=40, fps=10.0)
    summary = ingest_videos([path], store=tmp_path / "s.zarr", fps=5, scale=0.5, progress=False)
    assert summary.shape == (20, 24, 32)
    video = open_video(tmp_path / "s.zarr")
    assert video.fps == 5
    expected = _ffmpeg_gray(path, "-vf", "fps=5.0,scale=32:24:flags=area,format=gray")
    np.testing.assert_array_equal(video.frames.compute().ravel(), expected)


def test_explicit_size_and_color(make_video, tmp_path: Path) -> None:
    path, _ = make_video("clip.mp4", n_frames=10, codec="h264")
    summary = ingest_videos([path], store=tmp_path / "s.zarr", size=(40, 30), color=True, progress=False)
    assert summary.shape == (10, 30, 40, 3)
    array = zarr.open_array(tmp_path / "s.zarr" / "video", mode="r")
    assert array.metadata.dimension_names == ("frame", "y", "x", "channel")


def test_two_videos_of_different_sizes_concatenate(make_video, tmp_path: Path) -> None:
    first, frames_a = make_video("a.mkv", n_frames=17, height=48, width=64, seed=1)
    second, _ = make_video("b.mkv", n_frames=12, height=96, width=128, seed=2)
    summary = ingest_videos([first, second], store=tmp_path / "s.zarr", chunk_frames=5, progress=False)
    assert summary.shape == (29, 48, 64)
    video = open_video(tmp_path / "s.zarr")
    assert video.segments == [(0, 17), (17, 29)]
    assert [s["frame_range"] for s in video.attrs["sources"]] == [[0, 17], [17, 29]]
    data = video.frames.compute()
    np.testing.assert_array_equal(data[:17], frames_a)
    expected_b = _ffmpeg_gray(second, "-vf", "scale=64:48:flags=area,format=gray").reshape(12, 48, 64)
    np.testing.assert_array_equal(data[17:], expected_b)


def test_default_chunk_is_about_32_mib() -> None:
    assert default_chunk_frames(320 * 240) == 436
    assert default_chunk_frames(1280 * 720) == 36
    assert default_chunk_frames(10**9) == 1


def test_truncated_video_ingests_what_decodes_and_warns(make_video, tmp_path: Path) -> None:
    path, _ = make_video("clip.mp4", n_frames=60, codec="h264")
    data = path.read_bytes()  # header first (+faststart): the cut removes frames it announces
    truncated = tmp_path / "half.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.warns(IngestWarning, match="decoded"):
        summary = ingest_videos([truncated], store=tmp_path / "s.zarr", progress=False)
    assert 0 < summary.shape[0] < 60
    assert summary.warnings and "truncated" in summary.warnings[0]
    assert open_video(tmp_path / "s.zarr").n_frames == summary.shape[0]


def test_a_variable_frame_rate_video_is_not_taken_for_a_truncated_one(
    make_video, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A VFR file's ``tbr`` is the rate of its fastest stretch: 30 here, for 20 frames/s on average."""
    path, _ = make_video("cfr.mp4", n_frames=120, fps=30, codec="h264")
    vfr = tmp_path / "vfr.mp4"
    ffmpeg("-i", str(path), "-vf", "setpts='if(lt(N,60),N/30,2+(N-60)/10)/TB'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", str(vfr))  # fmt: skip
    info = probe_video(vfr)
    assert info.fps != info.average_fps
    assert info.fewest_frames() <= 120 <= info.most_frames()
    with warnings.catch_warnings():
        warnings.simplefilter("error", IngestWarning)
        summary = ingest_videos([vfr], store=tmp_path / "s.zarr", progress=True)
    assert summary.shape[0] == 120 and not summary.warnings
    # the bar started from the header's estimate and ends at the frames there were
    bars = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert f"/{info.estimated_frames()}" in bars[1] and info.estimated_frames() != 120
    assert "120/120" in [line for line in bars if line.strip()][-1]


def test_a_rate_that_gives_no_frame_names_the_rate_that_would(make_video, tmp_path: Path) -> None:
    path, _ = make_video(n_frames=30, fps=10)  # 3 s
    with pytest.raises(
        SourceNotReadableError, match=r"no frame at --fps 0.1 \(it lasts 3 s\).* at least 0.333"
    ):
        ingest_videos([path], store=tmp_path / "s.zarr", fps=0.1, progress=False)


def test_a_full_disk_keeps_the_frames_written_and_resume_finishes(
    make_video, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ENOSPC from the store's third chunk write: one line, exit 1; ``--resume`` gives the undisturbed bytes."""
    path, _ = make_video(n_frames=50)
    reference = ingest_videos([path], store=tmp_path / "ref.zarr", chunk_frames=10, progress=False)
    store = tmp_path / "s.zarr"
    real_set = zarr.storage.LocalStore.set
    chunk_writes = 0

    async def full_after_two_chunks(self: zarr.storage.LocalStore, key: str, value: object) -> None:
        nonlocal chunk_writes
        if key.startswith("video/c/"):
            chunk_writes += 1
            if chunk_writes > 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(self.root / key))
        await real_set(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", full_after_two_chunks)
    argv = ["ingest", str(path), "--store", str(store), "--chunk-frames", "10", "--quiet"]
    status, _, err = run_cli(capsys, *argv)
    assert status == 1
    assert_one_line_error(
        err, "no space left on the device holding the store", "are stored and kept", "--resume"
    )
    with pytest.raises(StoreIncompleteError):
        open_video(store)
    monkeypatch.setattr(zarr.storage.LocalStore, "set", real_set)
    status, _, err = run_cli(capsys, *argv, "--resume")
    assert status == 0, err
    assert open_video(store).fingerprint == reference.fingerprint
    np.testing.assert_array_equal(
        open_video(store).frames.compute(), open_video(tmp_path / "ref.zarr").frames.compute()
    )


def test_existing_store_is_refused_then_overwritten(make_video, tmp_path: Path) -> None:
    path, _ = make_video(n_frames=10)
    store = tmp_path / "s.zarr"
    first = ingest_videos([path], store=store, progress=False)
    with pytest.raises(StoreExistsError, match="--overwrite"):
        ingest_videos([path], store=store, progress=False)
    assert open_video(store).fingerprint == first.fingerprint
    second = ingest_videos([path], store=store, fps=5, overwrite=True, progress=False)
    assert second.shape[0] == 5


def test_foreign_folder_is_never_touched(make_video, tmp_path: Path) -> None:
    path, _ = make_video(n_frames=5)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"not ours")
    for overwrite in (False, True):
        with pytest.raises(NotAVidsvdStoreError):
            ingest_videos([path], store=foreign, overwrite=overwrite, progress=False)
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]


def test_foreign_zarr_group_is_not_ours(make_video, tmp_path: Path) -> None:
    path, _ = make_video(n_frames=5)
    zarr.open_group(tmp_path / "other.zarr", mode="w")
    with pytest.raises(NotAVidsvdStoreError):
        ingest_videos([path], store=tmp_path / "other.zarr", overwrite=True, progress=False)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"fps": 0}, "--fps"),
        ({"fps": -1.0}, "--fps"),
        ({"scale": 0}, "--scale"),
        ({"scale": 2}, "--scale"),
        ({"size": (0, 10)}, "--size"),
        ({"scale": 0.5, "size": (10, 10)}, "either"),
        ({"chunk_frames": 0}, "--chunk-frames"),
        ({"zstd_level": 0}, "--zstd-level must be an integer in 1-19"),
        ({"zstd_level": 20}, "--zstd-level must be an integer in 1-19"),
        ({"zstd_level": 2.5}, "--zstd-level"),
        ({"zstd_level": True}, "--zstd-level"),
        ({"overwrite": True, "resume": True}, "contradict"),
    ],
)
def test_invalid_options_are_refused_before_anything_is_written(
    make_video, tmp_path: Path, options, match
) -> None:
    path, _ = make_video(n_frames=5)
    with pytest.raises(InvalidParameterError, match=match):
        ingest_videos([path], store=tmp_path / "s.zarr", progress=False, **options)
    assert not (tmp_path / "s.zarr").exists()


def test_resume_refuses_other_options(make_video, tmp_path: Path) -> None:
    path, _ = make_video(n_frames=20)
    store = tmp_path / "s.zarr"
    ingest_videos([path], store=store, chunk_frames=5, progress=False)
    _mark_interrupted(store, frames_written=10)
    with pytest.raises(StoreExistsError, match=r"interrupted ingest of other videos or options.*--overwrite"):
        ingest_videos([path], store=store, chunk_frames=5, fps=5, resume=True, progress=False)
    with pytest.raises(StoreIncompleteError, match="--resume"):
        ingest_videos([path], store=store, chunk_frames=5, progress=False)
    with pytest.raises(StoreIncompleteError, match="incomplete"):
        open_video(store)


def test_resume_continues_at_the_level_it_started_with(make_video, tmp_path: Path) -> None:
    path, _ = make_video(n_frames=20)
    store = tmp_path / "s.zarr"
    reference = ingest_videos([path], store=tmp_path / "ref.zarr", chunk_frames=5, progress=False)
    ingest_videos([path], store=store, chunk_frames=5, zstd_level=7, progress=False)
    _mark_interrupted(store, frames_written=10)
    with pytest.raises(StoreExistsError, match=r"--zstd-level 7; resume it at that level.*--overwrite"):
        ingest_videos([path], store=store, chunk_frames=5, zstd_level=3, resume=True, progress=False)
    resumed = ingest_videos([path], store=store, chunk_frames=5, resume=True, progress=False)
    assert resumed.resumed_from_frame == 10 and resumed.fingerprint == reference.fingerprint
    codecs = json.loads((store / "video" / "zarr.json").read_text())["codecs"]
    assert {"name": "zstd", "configuration": {"level": 7, "checksum": True}} in codecs
    np.testing.assert_array_equal(
        open_video(store).frames.compute(), open_video(tmp_path / "ref.zarr").frames.compute()
    )


def test_resume_from_recorded_progress_gives_identical_bytes(make_video, tmp_path: Path) -> None:
    first, _ = make_video("a.mkv", n_frames=23, seed=1)
    second, _ = make_video("b.mkv", n_frames=14, seed=2)
    reference = ingest_videos([first, second], store=tmp_path / "ref.zarr", chunk_frames=5, progress=False)
    for frames_written in (0, 5, 20, 25, 35):
        store = tmp_path / f"cut{frames_written}.zarr"
        ingest_videos([first, second], store=store, chunk_frames=5, progress=False)
        _mark_interrupted(store, frames_written=frames_written)
        resumed = ingest_videos([first, second], store=store, chunk_frames=5, resume=True, progress=False)
        assert resumed.resumed_from_frame == frames_written
        assert resumed.fingerprint == reference.fingerprint
        np.testing.assert_array_equal(
            open_video(store).frames.compute(), open_video(tmp_path / "ref.zarr").frames.compute()
        )
        assert open_video(store).attrs["sources"] == open_video(tmp_path / "ref.zarr").attrs["sources"]


def test_resume_of_a_complete_store_is_refused(make_video, tmp_path: Path) -> None:
    path, _ = make_video(n_frames=5)
    ingest_videos([path], store=tmp_path / "s.zarr", progress=False)
    with pytest.raises(StoreExistsError, match="complete"):
        ingest_videos([path], store=tmp_path / "s.zarr", resume=True, progress=False)


def _mark_interrupted(store: Path, *, frames_written: int) -> None:
    """Rewind a complete store to the state a kill after ``frames_written`` frames leaves."""
    array = zarr.open_array(store / "video", mode="r+")
    attrs = dict(array.attrs)
    chunk = array.chunks[0]
    done = [s for s in attrs["sources"] if s["frame_range"][1] <= frames_written]
    progress = {
        "frames_written": frames_written,
        "sources_done": done + [s for s in attrs["sources"][len(done) : len(done) + 1]],
    }
    array.attrs.put(
        {k: v for k, v in attrs.items() if k not in ("fingerprint", "sources", "segments")}
        | {"complete": False, "progress": progress}
    )
    # the array grows ahead of the writes; a kill leaves it longer than what was written
    array.resize((frames_written + 3 * chunk, *array.shape[1:]))


def test_chunk_writer_abort_returns_when_the_writer_missed_its_wakeup(tmp_path: Path) -> None:
    """Ctrl-C inside ``Queue.put`` can queue a chunk without waking the writer: abort must still end it."""
    import time

    from storage.chunk_writer import ChunkWriter

    array = zarr.create_array(
        store=str(tmp_path / "a.zarr"), shape=(0, 4, 4), chunks=(1, 4, 4), dtype="uint8"
    )
    writer = ChunkWriter(array, {"frames_written": 0}, expected_frames=4)
    writer.put(np.ones((1, 4, 4), np.uint8))
    time.sleep(0.3)  # taken and written
    for _ in range(writer._queue.maxsize):  # queued behind the Condition's back: nobody is notified
        writer._queue.queue.append(("chunk", np.zeros((1, 4, 4), np.uint8)))
    started = time.monotonic()
    writer.abort()
    assert time.monotonic() - started < 5
    assert not writer._thread.is_alive()
    # what was recorded is on disk, in order (a queued chunk may have been taken meanwhile)
    written = array.attrs["progress"]["frames_written"]
    assert 1 <= written <= 1 + writer._queue.maxsize and array.shape[0] == written
    expected = np.concatenate([np.ones((1, 4, 4), np.uint8), np.zeros((written - 1, 4, 4), np.uint8)])
    np.testing.assert_array_equal(array[:], expected)
