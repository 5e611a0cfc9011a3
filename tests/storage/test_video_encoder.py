"""Tests of storage.video_encoder: real encodes with the bundled ffmpeg, decoded back."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

from storage import video_encoder
from storage.errors import InvalidParameterError, SourceNotReadableError, StoreExistsError
from storage.video_decoder import DecodeOptions, decode_blocks, ffmpeg_executable, probe_video
from storage.video_encoder import VideoEncodeError, write_video

T, H, W = 20, 48, 64


def gray_frames(n: int = T, height: int = H, width: int = W) -> np.ndarray:
    """Smooth moving pattern with a bright square: compresses well, still has content."""
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((n, height, width), dtype=np.uint8)
    for t in range(n):
        base = 110 + 50 * np.sin((xx + 2 * t) / 9.0) * np.cos(yy / 7.0)
        frames[t] = np.rint(base).astype(np.uint8)
        frames[t, 10:20, 5 + t : 15 + t] = 230
    return frames


def rgb_frames(n: int = T) -> np.ndarray:
    gray = gray_frames(n).astype(np.int16)
    return np.stack([gray, 255 - gray, gray // 2 + 60], axis=-1).astype(np.uint8)


def decode_all(path: Path, *, color: bool = False) -> np.ndarray:
    info = probe_video(path)
    options = DecodeOptions(width=info.width, height=info.height, color=color)
    return np.concatenate(list(decode_blocks(info, options, block_frames=7)))


def ffmpeg_stream_line(path: Path) -> str:
    """The 'Video:' line of ffmpeg's description of the file."""
    result = subprocess.run(
        [ffmpeg_executable(), "-hide_banner", "-i", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in result.stderr.splitlines() if "Video:" in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("suffix", [".mkv", ".avi"])
def test_ffv1_gray_round_trips_exactly(tmp_path: Path, suffix: str) -> None:
    frames = gray_frames()
    path = tmp_path / f"gray{suffix}"
    assert write_video(path, iter(frames), fps=10.0, codec="ffv1") == T
    info = probe_video(path)
    assert (info.width, info.height, info.codec.rstrip(",")) == (W, H, "ffv1")
    assert info.fps == pytest.approx(10.0)
    assert "gray" in ffmpeg_stream_line(path)
    decoded = decode_all(path)
    assert decoded.shape == frames.shape
    np.testing.assert_array_equal(decoded, frames)


def test_ffv1_rgb_round_trips_exactly(tmp_path: Path) -> None:
    frames = rgb_frames()
    path = tmp_path / "rgb.mkv"
    assert write_video(path, frames, fps=10.0, codec="ffv1") == T
    np.testing.assert_array_equal(decode_all(path, color=True), frames)


def test_ffv1_keeps_odd_sizes(tmp_path: Path) -> None:
    frames = gray_frames(5, 47, 63)
    path = tmp_path / "odd.mkv"
    write_video(path, frames, fps=5.0, codec="ffv1")
    np.testing.assert_array_equal(decode_all(path), frames)


def test_h264_gray_is_close_yuv420p_and_faststart(tmp_path: Path) -> None:
    frames = gray_frames()
    path = tmp_path / "gray.mp4"
    assert write_video(path, iter(frames), fps=10.0) == T
    info = probe_video(path)
    assert (info.width, info.height, info.codec) == (W, H, "h264")
    decoded = decode_all(path)
    assert decoded.shape == frames.shape
    error = np.abs(decoded.astype(np.int16) - frames.astype(np.int16))
    assert error.mean() < 2.0
    line = ffmpeg_stream_line(path)
    assert "yuv420p" in line
    assert "smpte170m" in line
    data = path.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat"), "index must precede the media data"


def test_h264_rgb_keeps_the_colours(tmp_path: Path) -> None:
    colours = [(200, 30, 40), (20, 180, 60), (30, 40, 220), (128, 128, 128)]
    frames = np.stack([np.broadcast_to(np.array(c, np.uint8), (H, W, 3)) for c in colours * 3])
    path = tmp_path / "rgb.mp4"
    write_video(path, iter(frames), fps=4.0, crf=10)
    decoded = decode_all(path, color=True)
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(np.int16) - frames.astype(np.int16)).max() <= 3


def test_higher_crf_gives_a_smaller_file(tmp_path: Path) -> None:
    frames = gray_frames()
    write_video(tmp_path / "good.mp4", frames, fps=10.0, crf=5)
    write_video(tmp_path / "small.mp4", frames, fps=10.0, crf=40)
    assert (tmp_path / "small.mp4").stat().st_size < (tmp_path / "good.mp4").stat().st_size


def test_a_faster_preset_writes_the_same_frames_and_says_so_in_the_stream(tmp_path: Path) -> None:
    frames = gray_frames()
    for preset in ("ultrafast", "veryfast"):
        path = tmp_path / f"{preset}.mp4"
        assert write_video(path, frames, fps=10.0, crf=18, preset=preset) == len(frames)
        decoded = decode_all(path)
        assert decoded.shape == frames.shape
        assert np.abs(decoded.astype(np.int16) - frames.astype(np.int16)).mean() < 2.0
    # x264 writes its options into the stream: ultrafast drops CABAC, veryfast keeps it
    assert b"cabac=0" in (tmp_path / "ultrafast.mp4").read_bytes()
    assert b"cabac=1" in (tmp_path / "veryfast.mp4").read_bytes()


def test_blocks_and_single_frames_can_be_mixed(tmp_path: Path) -> None:
    frames = gray_frames(30)
    items = [frames[0:7], frames[7], frames[8:20], frames[20], frames[21:30]]
    path = tmp_path / "mixed.mkv"
    assert write_video(path, iter(items), fps=10.0, codec="ffv1") == 30
    np.testing.assert_array_equal(decode_all(path), frames)


def test_rgb_blocks(tmp_path: Path) -> None:
    frames = rgb_frames()
    path = tmp_path / "blocks.mkv"
    assert write_video(path, [frames[:5], frames[5:]], fps=10.0, codec="ffv1") == T
    np.testing.assert_array_equal(decode_all(path, color=True), frames)


def test_color_true_repeats_gray_into_three_channels(tmp_path: Path) -> None:
    frames = gray_frames(5)
    path = tmp_path / "as_rgb.mkv"
    write_video(path, frames, fps=5.0, codec="ffv1", color=True)
    decoded = decode_all(path, color=True)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[..., channel], frames)


def test_gray_frames_three_pixels_wide_start_with_a_single_frame(tmp_path: Path) -> None:
    frames = gray_frames(4, 16, 3)  # a block (4, 16, 3) would read as one RGB frame
    path = tmp_path / "narrow.mkv"
    assert write_video(path, [frames[0], frames[1:]], fps=5.0, codec="ffv1") == 4
    np.testing.assert_array_equal(decode_all(path), frames)


def test_odd_size_h264_is_refused_by_default(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="even width and height"):
        write_video(tmp_path / "odd.mp4", gray_frames(3, 47, 63), fps=5.0)
    assert list(tmp_path.iterdir()) == []


def test_odd_size_h264_pads_by_repeating_the_edge(tmp_path: Path) -> None:
    frames = gray_frames(6, 47, 63)
    path = tmp_path / "padded.mp4"
    write_video(path, frames, fps=5.0, crf=0, odd_size="pad")
    info = probe_video(path)
    assert (info.width, info.height) == (64, 48)
    decoded = decode_all(path).astype(np.int16)
    expected = np.pad(frames, [(0, 0), (0, 1), (0, 1)], mode="edge").astype(np.int16)
    assert np.abs(decoded - expected).mean() < 2.0


def test_numpy_numbers_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "np.mp4"
    assert write_video(path, gray_frames(4), fps=np.float32(12.5), crf=np.int64(20)) == 4  # type: ignore[arg-type]
    assert probe_video(path).fps == pytest.approx(12.5)


def test_fractional_frame_rate(tmp_path: Path) -> None:
    path = tmp_path / "ntsc.mp4"
    write_video(path, gray_frames(30), fps=30000 / 1001)
    assert probe_video(path).fps == pytest.approx(29.97, abs=0.01)


def failing_frames(frames: np.ndarray, fail_after: int) -> Iterator[np.ndarray]:
    for index, frame in enumerate(frames):
        if index == fail_after:
            raise RuntimeError("camera unplugged")
        yield frame


@pytest.mark.parametrize("codec,suffix", [("h264", ".mp4"), ("ffv1", ".mkv")])
def test_failing_iterator_leaves_no_file(tmp_path: Path, codec: str, suffix: str) -> None:
    path = tmp_path / f"video{suffix}"
    with pytest.raises(RuntimeError, match="camera unplugged"):
        write_video(path, failing_frames(gray_frames(), 12), fps=10.0, codec=codec)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_failure_leaves_an_existing_target_untouched(tmp_path: Path) -> None:
    path = tmp_path / "video.mkv"
    write_video(path, gray_frames(5), fps=5.0, codec="ffv1")
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        write_video(path, failing_frames(gray_frames(), 3), fps=5.0, codec="ffv1")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["video.mkv"]


def test_bad_frame_midway_raises_and_leaves_no_file(tmp_path: Path) -> None:
    frames = list(gray_frames(6))
    frames[4] = np.zeros((H + 2, W), dtype=np.uint8)
    path = tmp_path / "video.mp4"
    with pytest.raises(InvalidParameterError, match="item 4"):
        write_video(path, frames, fps=5.0)
    assert list(tmp_path.iterdir()) == []


def test_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "video.mkv"
    write_video(path, gray_frames(5), fps=5.0, codec="ffv1")
    assert write_video(path, gray_frames(8), fps=5.0, codec="ffv1") == 8
    assert decode_all(path).shape[0] == 8
    with pytest.raises(StoreExistsError):
        write_video(path, gray_frames(3), fps=5.0, codec="ffv1", overwrite=False)
    assert decode_all(path).shape[0] == 8


def test_creates_missing_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "video.mp4"
    write_video(path, gray_frames(4), fps=5.0)
    assert path.is_file()


GOOD = gray_frames(3)


@pytest.mark.parametrize(
    "frames,options,match",
    [
        (GOOD.astype(np.float32), {}, "dtype float32"),
        (GOOD.astype(np.int16), {}, "dtype int16"),
        ([GOOD[0].tolist()], {}, "not a numpy array"),
        ([np.zeros(10, np.uint8)], {}, "shape"),
        ([np.zeros((1, 2, 4, 4, 3), np.uint8)], {}, "shape"),
        ([np.zeros((2, 8, 8, 4), np.uint8)], {}, r"\(n, y, x, 3\)"),
        ([GOOD[0], GOOD[0, :, :10]], {}, "item 1"),
        ([], {}, "no frames"),
        (GOOD, {"fps": 0}, "fps"),
        (GOOD, {"fps": -5.0}, "fps"),
        (GOOD, {"fps": float("nan")}, "fps"),
        (GOOD, {"crf": 52}, "crf"),
        (GOOD, {"crf": -1}, "crf"),
        (GOOD, {"crf": 20.5}, "crf"),
        (GOOD, {"preset": "turbo"}, "preset must be one of x264's"),
        (GOOD, {"fps": "10"}, "fps"),
        (GOOD, {"fps": True}, "fps"),
        (GOOD, {"codec": "vp9"}, "codec"),
        (GOOD, {"codec": "ffv1"}, r"\.mkv/\.avi"),
        (rgb_frames(2), {"color": False}, "color=False"),
        ([rgb_frames(2)], {"color": False}, "color=False"),
        (GOOD, {"odd_size": "crop"}, "odd_size"),
    ],
)
def test_bad_inputs_raise(tmp_path: Path, frames: object, options: dict[str, object], match: str) -> None:
    kwargs: dict[str, object] = {"fps": 10.0} | options
    with pytest.raises(InvalidParameterError, match=match) as caught:
        write_video(tmp_path / "video.mp4", frames, **kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)
    assert list(tmp_path.iterdir()) == []


def test_h264_refuses_a_matroska_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match=r"\.mp4"):
        write_video(tmp_path / "video.mkv", GOOD, fps=10.0, codec="h264")


def test_directory_target_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "clip.mp4"
    folder.mkdir()
    with pytest.raises(InvalidParameterError, match="directory"):
        write_video(folder, GOOD, fps=10.0)


def test_ffmpeg_failure_raises_and_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = video_encoder.ffmpeg_encode_command

    def broken(*args: object, **kwargs: object) -> list[str]:
        command = original(*args, **kwargs)  # type: ignore[arg-type]
        return [*command[:-1], "-no_such_option", "1", command[-1]]

    monkeypatch.setattr(video_encoder, "ffmpeg_encode_command", broken)
    with pytest.raises(VideoEncodeError, match="ffmpeg failed") as caught:
        write_video(tmp_path / "video.mkv", gray_frames(), fps=10.0, codec="ffv1")
    assert isinstance(caught.value, RuntimeError)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL])
def test_a_decoder_stopped_by_a_signal_is_not_the_end_of_the_video(tmp_path: Path, stop: int) -> None:
    """Ctrl-C reaches ffmpeg too; its output then ends early, which must not pass for the video's end."""
    path = tmp_path / "long.mkv"
    write_video(path, iter(gray_frames(n=1500)), fps=25.0, codec="ffv1")  # > the 1 MiB pipe
    info = probe_video(path)
    blocks = decode_blocks(info, DecodeOptions(width=W, height=H), block_frames=1)
    next(blocks)
    (decoder,) = [child for child in psutil.Process().children() if "ffmpeg" in child.name()]
    decoder.send_signal(stop)
    with pytest.raises(SourceNotReadableError, match=r"stopped decoding .* interrupted or killed"):
        for _ in blocks:
            pass
