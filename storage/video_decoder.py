"""Decode any video ffmpeg can read into uint8 frames, streaming, a block at a time.

The decoder runs imageio-ffmpeg's bundled ffmpeg binary as a subprocess (no system
ffmpeg is needed) and lets ffmpeg itself resample the frame rate, scale and convert to
gray, so Python never touches full-size RGB frames it does not need.

Gray is ffmpeg's own ``gray`` pixel format: the luma plane Y' expanded to the full
0-255 range.  For BT.601 sources (most SD surveillance footage) that is exactly
``0.299 R + 0.587 G + 0.114 B``, the weights of the original notebook's ``rgb2gray``;
sources tagged BT.709 get BT.709 luma, as ffmpeg defines it.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import numpy.typing as npt

from storage.errors import InvalidParameterError, SourceNotFoundError, SourceNotReadableError

__all__ = [
    "DecodeOptions",
    "DecodeResult",
    "SourceInfo",
    "decode_blocks",
    "ffmpeg_executable",
    "ffmpeg_null_command",
    "ffmpeg_version",
    "output_size",
    "probe_video",
]


def ffmpeg_executable() -> str:
    """Return the path of the ffmpeg binary bundled with imageio-ffmpeg."""
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def ffmpeg_version() -> str:
    """Return the version of the bundled ffmpeg (it determines the decoded bytes)."""
    return str(imageio_ffmpeg.get_ffmpeg_version())


@dataclass(frozen=True, kw_only=True)
class SourceInfo:
    """What ffmpeg says about a source file before decoding it.

    Attributes
    ----------
    path : str
        Absolute path of the file.
    size_bytes : int
        Size of the file in bytes.
    codec : str
        Video codec name as ffmpeg reports it (``h264``, ``mpeg4``, ...).
    fps : float
        Native frame rate (ffmpeg's ``tbr``, its guess of the real base rate).
    width, height : int
        Native frame size in pixels.
    duration_s : float
        Duration in seconds (0 when the container does not say).
    average_fps : float
        The header's average frame rate (ffmpeg's ``fps``; 0 when not given).  A
        variable-rate file's ``tbr`` is the rate of its fastest stretch, and some AVI
        files announce twice the rate of the frames they hold, so the two can differ
        either way.
    """

    path: str
    size_bytes: int
    codec: str
    fps: float
    width: int
    height: int
    duration_s: float
    average_fps: float = 0.0

    def estimated_frames(self, fps: float | None = None) -> int:
        """Estimate the number of frames decoded at ``fps`` (native when None)."""
        rate = self.fps if fps is None else fps
        return max(1, round(self.duration_s * rate)) if self.duration_s > 0 else 0

    def fewest_frames(self, fps: float | None = None) -> int:
        """The smallest frame count the header allows at ``fps`` (native when None).

        At the native rate this uses the lower of the two rates the header gives, so
        that a variable-rate file is not taken for a truncated one.
        """
        return min(self._frames_at_each_rate(fps))

    def most_frames(self, fps: float | None = None) -> int:
        """The largest frame count the header allows at ``fps`` (native when None)."""
        return max(self._frames_at_each_rate(fps))

    def _frames_at_each_rate(self, fps: float | None) -> tuple[int, ...]:
        if fps is not None or self.average_fps <= 0 or self.duration_s <= 0:
            return (self.estimated_frames(fps),)
        return (self.estimated_frames(), max(1, round(self.duration_s * self.average_fps)))


@dataclass(frozen=True, kw_only=True)
class DecodeOptions:
    """How ffmpeg turns a source into frames.

    Attributes
    ----------
    width, height : int
        Output frame size; ffmpeg scales (area filter) when it differs from the source.
    fps : float or None
        Output frame rate; ffmpeg drops or repeats frames with its ``fps`` filter.
        ``None`` keeps every decoded frame once, at the native rate.
    color : bool
        ``True`` for RGB frames (frame, y, x, 3); ``False`` for gray (frame, y, x).
    """

    width: int
    height: int
    fps: float | None = None
    color: bool = False

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of one output frame: (y, x) or (y, x, channel)."""
        return (self.height, self.width, 3) if self.color else (self.height, self.width)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one output frame."""
        return math.prod(self.frame_shape)


@dataclass
class DecodeResult:
    """Filled in by :func:`decode_blocks` as it runs; final once the iterator ends.

    Attributes
    ----------
    n_frames : int
        Frames delivered so far.
    warnings : list of str
        What ffmpeg reported on stderr (decode errors of damaged or truncated files).
    """

    n_frames: int = 0
    warnings: list[str] | None = None


def output_size(
    info: SourceInfo, *, scale: float | None = None, size: tuple[int, int] | None = None
) -> tuple[int, int]:
    """Return the output (width, height) for a source, a scale factor or an explicit size.

    Parameters
    ----------
    info : SourceInfo
        The (first) source; its native size is the reference for ``scale``.
    scale : float, optional
        Factor in (0, 1]; each side is rounded to the nearest pixel, at least 1.
    size : (int, int), optional
        Explicit (width, height); wins over ``scale``.
    """
    if size is not None:
        return size
    if scale is None:
        return info.width, info.height
    return max(1, round(info.width * scale)), max(1, round(info.height * scale))


def probe_video(path: str | os.PathLike[str]) -> SourceInfo:
    """Read a source's header with ffmpeg: codec, frame rate, size, duration.

    The size is that of the frames ffmpeg delivers: a video tagged with a rotation
    or flip (a display matrix, as phones write) is decoded upright, as players show
    it, so a 320x240 stream tagged with a quarter turn gives 240x320 frames.  The
    size is read from one decoded frame, so the tag's spelling does not matter.

    Raises
    ------
    SourceNotFoundError
        The path does not exist.
    SourceNotReadableError
        The path is a directory, or ffmpeg finds no video stream in it.
    """
    file = Path(path)
    if not file.exists():
        raise SourceNotFoundError(f"video not found: {file} (check the path)")
    if file.is_dir():
        raise SourceNotReadableError(f"{file} is a directory; give the path of a video file")
    if not os.access(file, os.R_OK):
        raise SourceNotReadableError(f"cannot read {file}: permission denied")
    # One run prints the input's header and, after decoding one frame, the output
    # stream as ffmpeg delivers it: rotated or flipped by a display-matrix tag.
    header = subprocess.run(
        [
            ffmpeg_executable(),
            "-hide_banner",
            "-nostdin",
            "-i",
            str(file.absolute()),  # never a leading "-" that ffmpeg would read as an option
            "-map",
            "0:v:0?",
            "-frames:v",
            "1",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        check=False,
    ).stderr.decode("utf-8", "replace")
    input_header, _, output_header = header.partition("\nOutput #0")
    stream = _VIDEO_STREAM.search(input_header)
    if stream is None:
        if "Stream #" in header or "Duration:" in header:
            raise SourceNotReadableError(
                f"{file} has no decodable video stream (audio only, or no frames);"
                " give a video file with at least one frame"
            )
        reason = _last_meaningful_line(header)
        raise SourceNotReadableError(f"{file} is not a video ffmpeg can decode ({reason}); give a video file")
    description = stream.group("rest")
    size = _FRAME_SIZE.search(description)
    rate = _RATE_TBR.search(description) or _RATE_FPS.search(description)
    average = _RATE_FPS.search(description)
    duration = _DURATION.search(input_header)
    if size is None:
        raise SourceNotReadableError(f"{file}: ffmpeg reports no frame size; give a video file")
    width, height = int(size.group(1)), int(size.group(2))
    delivered = _VIDEO_STREAM.search(output_header)
    delivered_size = _FRAME_SIZE.search(delivered.group("rest")) if delivered else None
    if delivered_size is not None:  # the size after ffmpeg's autorotation
        width, height = int(delivered_size.group(1)), int(delivered_size.group(2))
    elif _QUARTER_TURN.search(input_header):
        width, height = height, width
    fps = _rate(rate) if rate else 0.0
    duration_s = (
        int(duration.group(1)) * 3600 + int(duration.group(2)) * 60 + float(duration.group(3))
        if duration
        else 0.0
    )
    return SourceInfo(
        path=str(file.resolve()),
        size_bytes=file.stat().st_size,
        codec=stream.group("codec"),
        fps=fps,
        width=width,
        height=height,
        duration_s=duration_s,
        average_fps=_rate(average) if average else 0.0,
    )


def _rate(match: re.Match[str]) -> float:
    """A rate as ffmpeg prints it (``29.97``, ``90k``) in frames per second."""
    return float(match.group(1)) * (1000 if match.group(2) == "k" else 1)


_VIDEO_STREAM = re.compile(r"Stream #\S+.*?: Video: (?P<codec>[\w-]+)(?P<rest>.*)")
_FRAME_SIZE = re.compile(r"[ ,](\d{1,5})x(\d{1,5})\b")
_RATE_TBR = re.compile(r"([\d.]+)(k?) tbr")
_RATE_FPS = re.compile(r"([\d.]+)(k?) fps")
_DURATION = re.compile(r"Duration: (\d+):(\d+):([\d.]+)")
_QUARTER_TURN = re.compile(r"rotation of -?(90|270)\.00 degrees", re.IGNORECASE)


def _last_meaningful_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    interesting = [ln for ln in lines if not ln.startswith(("ffmpeg version", "built with"))]
    return (interesting or lines or ["no details"])[-1][:200]


def filter_chain(info: SourceInfo, options: DecodeOptions) -> str:
    """Return the ffmpeg ``-vf`` chain that resamples, scales and converts.

    The ``fps`` filter comes first so that frames that will be dropped are never
    scaled; scaling uses the ``area`` filter, which averages when it shrinks.
    """
    steps: list[str] = []
    if options.fps is not None:
        steps.append(f"fps={options.fps!r}")
    if (options.width, options.height) != (info.width, info.height):
        steps.append(f"scale={options.width}:{options.height}:flags=area")
    steps.append("format=rgb24" if options.color else "format=gray")
    return ",".join(steps)


def ffmpeg_decode_command(info: SourceInfo, options: DecodeOptions) -> list[str]:
    """Return the ffmpeg command line that writes raw frames to stdout.

    ``-fps_mode passthrough`` makes ffmpeg emit each decoded (or ``fps``-filtered)
    frame exactly once instead of duplicating frames to a constant output rate.
    """
    return [
        ffmpeg_executable(),
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        info.path,
        "-map",
        "0:v:0",
        "-an",
        "-sn",
        "-vf",
        filter_chain(info, options),
        "-fps_mode",
        "passthrough",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24" if options.color else "gray",
        "pipe:1",
    ]


def ffmpeg_null_command(info: SourceInfo, options: DecodeOptions) -> list[str]:
    """Return the same decode as :func:`ffmpeg_decode_command`, written to nowhere.

    This is ffmpeg's own speed for the decode and filters ingest asks of it: the
    yardstick of ingest throughput benchmarks.
    """
    command = ffmpeg_decode_command(info, options)
    return [*command[: command.index("-f")], "-f", "null", "-"]


def decode_blocks(
    info: SourceInfo,
    options: DecodeOptions,
    *,
    block_frames: int,
    result: DecodeResult | None = None,
) -> Iterator[npt.NDArray[np.uint8]]:
    """Yield the decoded frames in blocks of ``block_frames`` (the last may be shorter).

    Parameters
    ----------
    info : SourceInfo
        The source, from :func:`probe_video`.
    options : DecodeOptions
        Output size, frame rate and colour.
    block_frames : int
        Frames per yielded block; each block is a fresh array of shape
        (n, y, x[, channel]), so a consumer may keep it while the next is decoded.
    result : DecodeResult, optional
        Filled with the frame count and ffmpeg's warnings as decoding proceeds.

    Notes
    -----
    Memory: one block of ``block_frames * frame_bytes`` bytes plus ffmpeg's own
    buffers, whatever the length of the video.  The ffmpeg process is killed when the
    iterator is closed early.
    """
    if block_frames < 1:
        raise InvalidParameterError(f"block_frames must be >= 1, got {block_frames}")
    state = result if result is not None else DecodeResult()
    state.warnings = []
    frame_bytes = options.frame_bytes
    process = subprocess.Popen(
        ffmpeg_decode_command(info, options),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        bufsize=0,
    )
    assert process.stdout is not None and process.stderr is not None
    _enlarge_pipe(process.stdout.fileno())
    stderr_lines: list[str] = []
    stderr_reader = threading.Thread(target=_collect_lines, args=(process.stderr, stderr_lines), daemon=True)
    stderr_reader.start()
    finished = False
    try:
        while True:
            block = np.empty((block_frames, *options.frame_shape), dtype=np.uint8)
            view = memoryview(block.data).cast("B")
            filled = _read_fully(process.stdout, view)
            n_frames = filled // frame_bytes
            state.n_frames += n_frames
            if n_frames:
                yield block[:n_frames] if n_frames < block_frames else block
            if filled < len(view):
                break
        finished = True
    finally:
        if not finished:
            process.kill()
        process.stdout.close()
        process.wait()
        stderr_reader.join(timeout=10)
        process.stderr.close()
    state.warnings.extend(stderr_lines)
    if finished and _stopped_by_signal(process.returncode):
        # Its output ended because ffmpeg was stopped, not because the video did.
        raise SourceNotReadableError(
            f"ffmpeg stopped decoding {info.path} after {state.n_frames} frames: it was"
            f" interrupted or killed (exit status {process.returncode}); run the command again"
        )
    if process.returncode != 0 and state.n_frames == 0:
        reason = _last_meaningful_line("\n".join(stderr_lines))
        raise SourceNotReadableError(
            f"ffmpeg could not decode {info.path} ({reason}); check that it is a video file"
        )


_FFMPEG_SIGNAL_EXIT = 255
"""ffmpeg's exit status after it caught SIGINT or SIGTERM and stopped early."""


def _stopped_by_signal(returncode: int | None) -> bool:
    """True when ffmpeg ended on a signal: killed by it, or its own exit after one."""
    return returncode is not None and (returncode < 0 or returncode == _FFMPEG_SIGNAL_EXIT)


_F_SETPIPE_SZ = 1031  # Linux fcntl: resize a pipe's buffer


def _enlarge_pipe(fd: int, size: int = 2**20) -> None:
    """Give ffmpeg a 1 MiB pipe (Linux) so it blocks, and wakes us, 16x less often."""
    with contextlib.suppress(OSError, ImportError):
        import fcntl

        fcntl.fcntl(fd, _F_SETPIPE_SZ, size)


def _read_fully(stream: object, view: memoryview) -> int:
    """Fill ``view`` from a raw pipe; return the bytes read (less only at end of stream)."""
    readinto = stream.readinto  # type: ignore[attr-defined]
    filled = 0
    while filled < len(view):
        got = readinto(view[filled:])
        if not got:
            break
        filled += got
    return filled


def _collect_lines(stream: object, sink: list[str]) -> None:
    for raw in stream:  # type: ignore[attr-defined]
        line = raw.decode("utf-8", "replace").strip()
        if line and len(sink) < 200:
            sink.append(line)
