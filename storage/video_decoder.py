"""Decode any video ffmpeg can read into uint8 frames, streaming, a block at a time.

A source is a video file or a folder of images (:mod:`storage.image_sequence`), which
ffmpeg decodes through its ``concat`` demuxer with the same filters.

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
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from storage.errors import InvalidParameterError, SourceNotReadableError
from storage.image_sequence import ffconcat_list, first_damaged
from storage.video_probe import (
    SourceInfo,
    ffmpeg_executable,
    ffmpeg_reason,
    ffmpeg_version,
    output_size,
    probe_video,
)

__all__ = [
    "DecodeOptions",
    "DecodeResult",
    "SourceInfo",
    "decode_blocks",
    "ffmpeg_executable",
    "ffmpeg_input",
    "ffmpeg_null_command",
    "ffmpeg_version",
    "output_size",
    "probe_video",
]


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


@contextlib.contextmanager
def ffmpeg_input(info: SourceInfo) -> Iterator[list[str]]:
    """Yield ffmpeg's input options for a source, valid inside the ``with`` block.

    ``-i PATH`` for a video file; for a folder of images, the ``concat`` demuxer on a
    temporary list of its images (:func:`storage.image_sequence.ffconcat_list`),
    removed on exit.
    """
    if not info.images:
        yield ["-i", info.path]
        return
    with ffconcat_list([Path(image) for image in info.images]) as listing:
        yield ["-f", "concat", "-safe", "0", "-i", listing]


def ffmpeg_decode_command(
    info: SourceInfo, options: DecodeOptions, *, source: Sequence[str] | None = None
) -> list[str]:
    """Return the ffmpeg command line that writes raw frames to stdout.

    ``-fps_mode passthrough`` makes ffmpeg emit each decoded (or ``fps``-filtered)
    frame exactly once instead of duplicating frames to a constant output rate.
    ``source``: the input options from :func:`ffmpeg_input` (needed for a folder of
    images); ``-i info.path`` when None.
    """
    return [
        ffmpeg_executable(),
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        *(source if source is not None else ["-i", info.path]),
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


def ffmpeg_null_command(
    info: SourceInfo, options: DecodeOptions, *, source: Sequence[str] | None = None
) -> list[str]:
    """Return the same decode as :func:`ffmpeg_decode_command`, written to nowhere.

    This is ffmpeg's own speed for the decode and filters ingest asks of it: the
    yardstick of ingest throughput benchmarks.
    """
    command = ffmpeg_decode_command(info, options, source=source)
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

    Raises
    ------
    SourceNotReadableError
        ffmpeg was stopped, or decoded nothing; for a folder of images, also when
        ffmpeg reports an error or delivers another number of frames than there are
        images at the native rate (a damaged image would shift every later frame).
    """
    if block_frames < 1:
        raise InvalidParameterError(f"block_frames must be >= 1, got {block_frames}")
    state = result if result is not None else DecodeResult()
    state.warnings = []
    with ffmpeg_input(info) as source:
        yield from _decode(info, options, source=source, block_frames=block_frames, state=state)
    if info.images and (state.warnings or (options.fps is None and state.n_frames != len(info.images))):
        damaged = first_damaged([Path(image) for image in info.images])
        culprit = f"{damaged.name} does not decode" if damaged else (state.warnings or ["no error"])[-1][:160]
        raise SourceNotReadableError(
            f"{len(info.images)} images in {info.path} decoded to {state.n_frames} frames ({culprit});"
            " remove or replace the damaged image"
        )


def _decode(
    info: SourceInfo, options: DecodeOptions, *, source: list[str], block_frames: int, state: DecodeResult
) -> Iterator[npt.NDArray[np.uint8]]:
    assert state.warnings is not None
    frame_bytes = options.frame_bytes
    process = subprocess.Popen(
        ffmpeg_decode_command(info, options, source=source),
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
        reason = ffmpeg_reason("\n".join(stderr_lines))
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
