"""Videos tagged with a rotation or flip (a display matrix, as phones write) are stored upright.

The rule: vidsvd stores the frames as players show them.  ffmpeg applies the tag when
it decodes; the probe reads the size of the frames it delivers, so a quarter turn
swaps width and height.  The tag is added with ``-c copy``: the coded pixels are the
same, so the stored frames must equal the untagged ones turned or mirrored, exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storage.video_array import open_video
from storage.video_decoder import probe_video
from storage.video_ingest import ingest_videos
from tests.helpers import ffmpeg

TAGS = {
    "rotate-90": (["-display_rotation", "90"], lambda f: np.rot90(f, 1, axes=(1, 2))),
    "rotate-180": (["-display_rotation", "180"], lambda f: np.rot90(f, 2, axes=(1, 2))),
    "rotate-270": (["-display_rotation", "270"], lambda f: np.rot90(f, 3, axes=(1, 2))),
    "rotate-minus-90": (["-display_rotation", "-90"], lambda f: np.rot90(f, 3, axes=(1, 2))),
    "hflip": (["-display_hflip"], lambda f: f[:, :, ::-1]),
    "vflip": (["-display_vflip"], lambda f: f[:, ::-1, :]),
}


@pytest.fixture(scope="module")
def upright(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    folder = tmp_path_factory.mktemp("rotation")
    source = folder / "upright.mp4"
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=64x48:rate=10",
        "-t",
        "1",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        str(source),
    )
    ingest_videos([source], store=folder / "upright.zarr", progress=False)
    return folder, np.asarray(open_video(folder / "upright.zarr").frames.compute())


@pytest.mark.parametrize("tag", sorted(TAGS))
def test_tagged_video_is_stored_as_displayed(upright: tuple[Path, np.ndarray], tag: str) -> None:
    folder, frames = upright
    flags, turn = TAGS[tag]
    tagged = folder / f"{tag}.mp4"
    ffmpeg(*flags, "-i", str(folder / "upright.mp4"), "-c", "copy", str(tagged))
    expected = turn(frames)
    info = probe_video(tagged)
    assert (info.height, info.width) == expected.shape[1:]
    store = folder / f"{tag}.zarr"
    ingest_videos([tagged], store=store, progress=False)
    stored = open_video(store)
    assert (stored.height, stored.width) == expected.shape[1:]
    np.testing.assert_array_equal(np.asarray(stored.frames.compute()), expected)


def test_rotated_video_scales_from_its_displayed_size(upright: tuple[Path, np.ndarray]) -> None:
    folder, _ = upright
    tagged = folder / "scaled.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(folder / "upright.mp4"), "-c", "copy", str(tagged))
    ingest_videos([tagged], store=folder / "scaled.zarr", scale=0.5, progress=False)
    assert open_video(folder / "scaled.zarr").frames.shape[1:] == (32, 24)


def test_paths_that_start_with_a_dash_are_files_not_options(
    upright: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    from storage.video_encoder import write_video

    folder, frames = upright
    monkeypatch.chdir(folder)
    (folder / "-dash").mkdir()
    write_video("-dash/-clip.mp4", iter(frames), fps=10)
    assert probe_video("-dash/-clip.mp4").width == frames.shape[2]
    assert sorted(p.name for p in (folder / "-dash").iterdir()) == ["-clip.mp4"]
