"""A folder of images as a video: CDnet's ``input/`` and exported frames, through ffmpeg."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipelines.synthetic import SceneSpec, render_scene
from storage.errors import SourceNotReadableError, StoreIncompleteError
from storage.image_sequence import SEQUENCE_FPS, natural_key, read_image_sequence
from storage.provenance import sequence_sha256
from storage.video_array import open_video
from storage.video_decoder import DecodeOptions, decode_blocks, probe_video
from storage.video_ingest import ingest_videos
from tests.helpers import assert_one_line_error, moving_square_frames, run_cli


def _write_images(folder: Path, frames: np.ndarray, pattern: str = "{}.png", first: int = 1) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / pattern.format(first + index) for index in range(len(frames))]
    for path, frame in zip(paths, frames, strict=True):
        assert cv2.imwrite(str(path), frame)
    return paths


def test_natural_order_compares_numbers_as_numbers() -> None:
    names = ["10.png", "9.png", "1.png", "frame2.png", "Frame10.png", "in000002.jpg", "in000010.jpg"]
    assert sorted(names, key=natural_key) == [
        "1.png",
        "9.png",
        "10.png",
        "frame2.png",
        "Frame10.png",
        "in000002.jpg",
        "in000010.jpg",
    ]


def test_a_folder_of_pngs_is_ingested_in_natural_order_exactly(tmp_path: Path) -> None:
    frames = moving_square_frames(12, 24, 32)  # 1.png .. 12.png: "10" after "9", not after "1"
    folder = tmp_path / "frames"
    _write_images(folder, frames)
    (folder / "notes.txt").write_text("not a frame")  # other files are ignored
    info = probe_video(folder)
    assert (info.width, info.height, info.fps) == (32, 24, SEQUENCE_FPS)
    assert [Path(image).name for image in info.images] == [f"{n}.png" for n in range(1, 13)]
    assert info.estimated_frames() == 12

    ingest_videos([folder], store=tmp_path / "s.zarr", progress=False)
    video = open_video(tmp_path / "s.zarr")
    np.testing.assert_array_equal(video.frames.compute(), frames)  # PNG is lossless
    (source,) = video.sources
    assert source.path == str(folder.resolve())
    assert source.sha256 == sequence_sha256(read_image_sequence(folder).images)


def test_names_with_spaces_and_quotes_reach_ffmpeg(tmp_path: Path) -> None:
    frames = moving_square_frames(3, 8, 8, seed=2)
    _write_images(tmp_path / "my frames", frames, "it's frame {}.png")
    info = probe_video(tmp_path / "my frames")
    decoded = np.concatenate(list(decode_blocks(info, DecodeOptions(width=8, height=8), block_frames=8)))
    np.testing.assert_array_equal(decoded, frames)


def test_the_content_hash_sees_renames_reorders_and_edits(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    paths = _write_images(folder, moving_square_frames(3, 8, 8))
    before = sequence_sha256(read_image_sequence(folder).images)
    paths[2].rename(folder / "30.png")  # same bytes, same order, another name
    renamed = sequence_sha256(read_image_sequence(folder).images)
    (folder / "30.png").rename(folder / "0.png")  # now first
    reordered = sequence_sha256(read_image_sequence(folder).images)
    assert len({before, renamed, reordered}) == 3


def test_fps_resamples_a_folder_from_its_25_frames_per_second(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    _write_images(folder, moving_square_frames(50, 16, 16))  # 2 s at 25 fps
    ingest_videos([folder], store=tmp_path / "s.zarr", fps=5.0, progress=False)
    assert open_video(tmp_path / "s.zarr").frames.shape[0] == 10


def test_a_cdnet_folder_runs_and_evaluates_with_the_baselines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CDnet's layout: input/in000001.jpg, groundtruth/gt000001.png, temporalROI.txt."""
    spec = SceneSpec(width=64, height=48, n_frames=60, n_objects=2, seed=3)
    rendered = list(render_scene(spec))
    video_dir = tmp_path / "scene"
    _write_images(video_dir / "input", np.stack([frame for frame, _ in rendered]), "in{:06d}.jpg")
    _write_images(video_dir / "groundtruth", np.stack([mask for _, mask in rendered]), "gt{:06d}.png")
    (video_dir / "temporalROI.txt").write_text("11 60\n")
    out = tmp_path / "out"
    code, _, stderr = run_cli(
        capsys, "run", str(video_dir / "input"), "--out", str(out), "--no-videos", "--quiet"
    )
    assert code == 0, stderr
    argv = ["evaluate", "--store", str(out / "store.zarr"), "--truth", str(video_dir), "--format", "cdnet"]
    code, stdout, stderr = run_cli(capsys, *argv, "--baseline", "mog2", "--json")
    assert code == 0, stderr
    scores = json.loads(stdout)
    assert scores["vidsvd"]["frames"] == scores["mog2"]["frames"] == 50  # the temporal ROI, 11-60
    assert scores["vidsvd"]["f_measure"] > 0.85  # measured 0.88; 0.89 from the scene as H.264
    assert 0 < scores["mog2"]["f_measure"] <= 1  # the colour frames, decoded again from the folder
    # new frames of the same camera, as a folder too: separated with the stored factors
    later = video_dir / "later"
    _write_images(later, np.stack([frame for frame, _ in rendered[:20]]), "in{:06d}.png")
    code, _, stderr = run_cli(
        capsys, "apply", "--store", str(out / "store.zarr"), str(later), "--out", str(tmp_path / "applied")
    )
    assert code == 0, stderr
    assert (tmp_path / "applied" / "compare.mp4").stat().st_size > 0

    # an image edited after the ingest: the baselines refuse to decode it again,
    # and the job refuses to reuse a store made from other images
    cv2.imwrite(str(video_dir / "input" / "in000005.jpg"), np.zeros((48, 64), np.uint8))
    code, _, stderr = run_cli(capsys, *argv, "--baseline", "mog2", "--json")
    assert_one_line_error(stderr, "gone or changed since the ingest")
    assert code != 0
    code, _, stderr = run_cli(capsys, "run", str(video_dir / "input"), "--out", str(out), "--quiet")
    assert_one_line_error(stderr, "holds another video", "contents differ")
    assert code != 0


def test_bad_folders_are_one_line_errors_and_write_nothing_complete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no frames here")
    code, _, stderr = run_cli(capsys, "ingest", str(empty), "--store", str(tmp_path / "a.zarr"))
    assert code != 0
    assert_one_line_error(stderr, "folder without images")

    mixed = tmp_path / "mixed"
    _write_images(mixed, moving_square_frames(3, 16, 16))
    cv2.imwrite(str(mixed / "4.png"), np.zeros((16, 20), np.uint8))
    code, _, stderr = run_cli(capsys, "ingest", str(mixed), "--store", str(tmp_path / "b.zarr"))
    assert code != 0
    assert_one_line_error(stderr, "4.png is 20x16", "one size")

    damaged = tmp_path / "damaged"
    paths = _write_images(damaged, moving_square_frames(8, 32, 32, seed=1))
    data = paths[3].read_bytes()
    paths[3].write_bytes(data[: len(data) // 2])  # the header still reads; the pixels do not
    code, _, stderr = run_cli(capsys, "ingest", str(damaged), "--store", str(tmp_path / "c.zarr"), "--quiet")
    assert code != 0
    assert_one_line_error(stderr, "8 images", "decoded to 7 frames", "4.png does not decode", "damaged image")
    with pytest.raises(StoreIncompleteError):
        open_video(tmp_path / "c.zarr")

    with pytest.raises(SourceNotReadableError, match="folder without images"):
        probe_video(empty)
    odd = tmp_path / "odd"
    _write_images(odd, moving_square_frames(2, 8, 8))
    (odd / "2.png").rename(odd / "2\nb.png")
    with pytest.raises(SourceNotReadableError, match="line break in its name"):
        probe_video(odd)
    (empty / "input").mkdir()  # a CDnet video folder: its frames are in input/
    with pytest.raises(SourceNotReadableError, match=r"for a CDnet folder, give .*input"):
        probe_video(empty)
