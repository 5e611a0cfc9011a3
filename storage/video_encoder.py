"""Encode uint8 frames into a video file with imageio-ffmpeg's bundled ffmpeg, streaming.

Two codecs, for two purposes:

``h264``
    For people: libx264, pixel format ``yuv420p``, ``-movflags +faststart`` (the index
    sits before the media data, so a browser starts playing before the download ends),
    in an ``.mp4``, ``.m4v`` or ``.mov`` file.  Lossy, controlled by ``crf``.  RGB and
    gray are converted to YUV with the BT.601 matrix, limited range, explicitly, and the
    file is tagged so (``smpte170m``), so players show the colours that went in and
    gray decodes back to gray within a grey level or two.  ``yuv420p``
    halves the chroma resolution and so needs an even width and height: an odd size is
    refused unless ``odd_size="pad"``, which repeats the last column and/or row.
``ffv1``
    For machines: FFV1 version 3, lossless, in an ``.mkv`` or ``.avi`` file.  Gray
    frames are stored as ``gray`` (one plane, not YUV) and RGB frames as RGB (``gbrp``
    in, FFV1's reversible colour transform inside), so decoding gives back exactly the
    bytes that went in, at any size.

Frames go to ffmpeg's stdin as raw video one item at a time; Python never holds more
than the item it was given.  ffmpeg writes to a hidden temporary file beside the target,
which is renamed onto the target only once ffmpeg has finished successfully: a failure
(a frame iterator that raises, bad frames, ffmpeg dying, an interrupt) leaves neither a
half-written target nor the temporary file, and an existing target untouched.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Final, Literal, get_args

import imageio_ffmpeg
import numpy as np
import numpy.typing as npt

from storage.errors import InvalidParameterError, StoreExistsError, VidsvdError

__all__ = [
    "CONTAINERS",
    "PRESETS",
    "VideoEncodeError",
    "write_video",
]

Codec = Literal["h264", "ffv1"]
Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]

PRESETS: Final[tuple[str, ...]] = get_args(Preset)
"""x264's presets, fastest first: each spends more time for a smaller file at the same crf."""

CONTAINERS: Final[dict[str, dict[str, str]]] = {
    "h264": {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"},
    "ffv1": {".mkv": "matroska", ".avi": "avi"},
}
"""For each codec, the file suffixes it may be written to and ffmpeg's muxer for each."""

_H264_FILTERS: Final = (
    "scale=out_color_matrix=bt601:out_range=tv,format=yuv420p,"
    "setparams=color_primaries=smpte170m:color_trc=smpte170m:colorspace=smpte170m:range=tv"
)
"""Convert to limited-range BT.601 YUV 4:2:0 explicitly and tag the frames so: the
conversion and the tags then agree whatever ffmpeg's defaults, and so do players."""

_MAX_CRF: Final = 51
_STDERR_LINES: Final = 200


class VideoEncodeError(VidsvdError, RuntimeError):
    """ffmpeg failed while encoding (disk full, unwritable location, encoder error)."""


@dataclass(frozen=True, kw_only=True)
class _Geometry:
    """The shape of the frames going in and of the frames ffmpeg receives."""

    height: int
    width: int
    color_in: bool
    color_out: bool
    pad_y: int
    pad_x: int

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of one input frame: (y, x) or (y, x, channel)."""
        return (self.height, self.width, 3) if self.color_in else (self.height, self.width)

    @property
    def encoded_size(self) -> tuple[int, int]:
        """(width, height) of the frames ffmpeg receives, after padding."""
        return self.width + self.pad_x, self.height + self.pad_y


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[npt.NDArray[np.uint8]],
    *,
    fps: float,
    codec: Codec = "h264",
    crf: int = 18,
    preset: Preset = "superfast",
    color: bool | None = None,
    odd_size: Literal["error", "pad"] = "error",
    overwrite: bool = True,
) -> int:
    """Encode frames, or blocks of frames, into a video file; return the frames written.

    Parameters
    ----------
    path : str or path-like
        The video to write.  Its suffix must suit the codec (see :data:`CONTAINERS`):
        ``.mp4``/``.m4v``/``.mov`` for ``h264``, ``.mkv``/``.avi`` for ``ffv1``.  Missing
        parent folders are created.
    frames : iterable of uint8 arrays
        Each item is one frame, (y, x) gray or (y, x, 3) RGB, or a block of frames,
        (n, y, x) or (n, y, x, 3); items may mix frames and blocks.  The first item fixes
        the frame shape, and later items are read against it.  A 3-d first item whose
        last axis is 3 is one RGB frame: to write gray frames 3 pixels wide, start with
        a single (y, 3) frame.
    fps : float
        Frame rate of the output, > 0.
    codec : {"h264", "ffv1"}
        ``h264`` for viewing (lossy, yuv420p, plays in browsers), ``ffv1`` for exact
        storage (lossless).
    crf : int
        libx264 constant rate factor, 0-51: lower is better and bigger, 18 is visually
        transparent for most content, 23 is x264's default.  Ignored by ``ffv1``.
    preset : str
        x264's trade of encoding time for file size at a given crf, one of
        :data:`PRESETS`: each step towards ``veryslow`` takes longer for a smaller
        file.  ``superfast`` by default.  Ignored by ``ffv1``.
    color : bool, optional
        ``None`` (default): as the frames are.  ``True``: write colour; gray frames are
        repeated into three equal channels.  ``False``: write gray; RGB frames are
        refused (convert them first, the conversion is not unique).  With ``h264`` the
        file is yuv420p either way; gray gives neutral chroma.
    odd_size : {"error", "pad"}
        What ``h264`` does with an odd width or height: refuse (default), or pad to even
        by repeating the last column/row, so the video is one pixel larger than the
        frames.  ``ffv1`` stores any size as is.
    overwrite : bool
        Replace an existing file at ``path`` (atomically, on success only).  With
        ``False`` an existing file is an error.

    Returns
    -------
    int
        Number of frames written.

    Raises
    ------
    InvalidParameterError
        A bad option (fps <= 0, crf outside 0-51, unknown codec or preset, wrong suffix), a frame
        that is not uint8, has the wrong number of dimensions or a different shape than
        the first one, an odd size for h264 without padding, or no frames at all.
    StoreExistsError
        ``path`` exists and ``overwrite`` is False.
    VideoEncodeError
        ffmpeg failed; its last error line is in the message.

    Notes
    -----
    Memory: the item being written (plus one padded or repeated copy of it when
    padding or ``color=True`` applies to gray frames) and ffmpeg's own buffers (a few
    frames for FFV1; x264's lookahead of some tens of frames at 4:2:0, 1.5 bytes per
    pixel), whatever the length of the video.

    The file is first written as a hidden ``.<name>.<random>.partial`` beside ``path``
    and renamed onto ``path`` once ffmpeg exits successfully; on any failure the
    temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path).absolute()  # never a leading "-" that ffmpeg would read as an option
    muxer = _check_options(target, fps=fps, codec=codec, crf=crf, preset=preset, overwrite=overwrite)
    items = iter(frames)
    first = next(items, None)
    if first is None:
        raise InvalidParameterError(f"no frames to write to {target}; give at least one frame")
    first_block = _as_uint8(first, index=0)
    geometry = _geometry(first_block, codec=codec, color=color, odd_size=odd_size)

    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.partial")
    try:
        written = _encode(
            temp,
            _chain(first_block, items),
            geometry=geometry,
            fps=fps,
            codec=codec,
            crf=crf,
            preset=preset,
            muxer=muxer,
        )
        if not overwrite and target.exists():
            raise StoreExistsError(f"{target} appeared while encoding; pass overwrite=True to replace it")
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return written


def _check_options(target: Path, *, fps: float, codec: str, crf: int, preset: str, overwrite: bool) -> str:
    """Validate the options; return ffmpeg's muxer name for the target's suffix."""
    if codec not in CONTAINERS:
        raise InvalidParameterError(f"codec must be 'h264' or 'ffv1', got {codec!r}")
    if not _is_real(fps) or not math.isfinite(fps):
        raise InvalidParameterError(f"fps must be a finite number > 0, got {fps!r}")
    if fps <= 0:
        raise InvalidParameterError(f"fps must be > 0, got {fps}")
    if not _is_real(crf) or int(crf) != crf or not 0 <= crf <= _MAX_CRF:
        raise InvalidParameterError(
            f"crf must be an integer in 0-{_MAX_CRF} (18: visually lossless), got {crf!r}"
        )
    if preset not in PRESETS:
        raise InvalidParameterError(f"preset must be one of x264's ({', '.join(PRESETS)}), got {preset!r}")
    suffixes = CONTAINERS[codec]
    muxer = suffixes.get(target.suffix.lower())
    if muxer is None:
        raise InvalidParameterError(
            f"a {codec} video must be written to a {'/'.join(suffixes)} file, got {target.name!r}"
        )
    if target.is_dir():
        raise InvalidParameterError(f"{target} is a directory; give the path of a video file")
    if not overwrite and target.exists():
        raise StoreExistsError(f"{target} already exists; pass overwrite=True to replace it")
    return muxer


def _as_uint8(item: object, *, index: int) -> npt.NDArray[np.uint8]:
    """Check that an item is a uint8 array of 2 to 4 dimensions; return it C-contiguous."""
    if not isinstance(item, np.ndarray):
        raise InvalidParameterError(
            f"item {index} of frames is a {type(item).__name__}, not a numpy array; give uint8 arrays"
        )
    if item.dtype != np.uint8:
        raise InvalidParameterError(
            f"item {index} of frames has dtype {item.dtype}; give uint8 frames"
            " (clip and convert with np.clip(a, 0, 255).astype(np.uint8))"
        )
    if not 2 <= item.ndim <= 4:
        raise InvalidParameterError(
            f"item {index} of frames has shape {item.shape}; give a frame (y, x) or"
            " (y, x, 3), or a block (n, y, x) or (n, y, x, 3)"
        )
    return np.ascontiguousarray(item)


def _geometry(
    first: npt.NDArray[np.uint8],
    *,
    codec: str,
    color: bool | None,
    odd_size: str,
) -> _Geometry:
    """Read the frame shape from the first item and decide colour and padding."""
    if odd_size not in ("error", "pad"):
        raise InvalidParameterError(f"odd_size must be 'error' or 'pad', got {odd_size!r}")
    if color is not None and not isinstance(color, bool):
        raise InvalidParameterError(f"color must be True, False or None, got {color!r}")
    if first.ndim == 4 or (first.ndim == 3 and first.shape[-1] == 3):
        color_in = True
        shape = first.shape[-3:]
    else:
        color_in = False
        shape = first.shape[-2:]
    if color_in and shape[-1] != 3:
        raise InvalidParameterError(f"a block of RGB frames must have shape (n, y, x, 3), got {first.shape}")
    if color_in and color is False:
        raise InvalidParameterError(
            "color=False but the frames are RGB; convert them to gray first, or pass"
            " color=None to keep the colour"
        )
    height, width = int(shape[0]), int(shape[1])
    if height < 1 or width < 1:
        raise InvalidParameterError(f"frames must be at least 1x1 pixels, got {first.shape}")
    pad_y = pad_x = 0
    if codec == "h264" and (height % 2 or width % 2):
        if odd_size == "error":
            raise InvalidParameterError(
                f"h264 (yuv420p) needs an even width and height, got {width}x{height};"
                " pass odd_size='pad' to repeat the last column/row, crop the frames,"
                " or use codec='ffv1'"
            )
        pad_y, pad_x = height % 2, width % 2
    return _Geometry(
        height=height,
        width=width,
        color_in=color_in,
        color_out=color_in if color is None else color,
        pad_y=pad_y,
        pad_x=pad_x,
    )


def _chain(
    first: npt.NDArray[np.uint8], rest: Iterator[npt.NDArray[np.uint8]]
) -> Iterator[tuple[int, npt.NDArray[np.uint8]]]:
    """Yield (item index, item) for the already-read first item and the rest."""
    yield 0, first
    for index, item in enumerate(rest, start=1):
        yield index, _as_uint8(item, index=index)


def _as_block(item: npt.NDArray[np.uint8], *, index: int, geometry: _Geometry) -> npt.NDArray[np.uint8]:
    """Return an item as a block (n, y, x[, 3]) of the frames ffmpeg must receive."""
    frame_shape = geometry.frame_shape
    if item.shape == frame_shape:
        block = item[np.newaxis]
    elif item.shape[1:] == frame_shape:
        block = item
    else:
        raise InvalidParameterError(
            f"item {index} of frames has shape {item.shape}, but the first item set the"
            f" frame shape to {frame_shape}; give frames {frame_shape} or blocks"
            f" (n, *{frame_shape}) throughout"
        )
    if geometry.pad_y or geometry.pad_x:
        widths = [(0, 0), (0, geometry.pad_y), (0, geometry.pad_x)]
        if geometry.color_in:
            widths.append((0, 0))
        block = np.pad(block, widths, mode="edge")
    if geometry.color_out and not geometry.color_in:
        block = np.repeat(block[..., np.newaxis], 3, axis=-1)
    return np.ascontiguousarray(block)


def ffmpeg_encode_command(
    output: Path, *, geometry: _Geometry, fps: float, codec: str, crf: int, preset: str, muxer: str
) -> list[str]:
    """Return the ffmpeg command line that reads raw frames on stdin and writes ``output``."""
    width, height = geometry.encoded_size
    rate = Fraction(float(fps)).limit_denominator(1_000_000)
    command = [
        str(imageio_ffmpeg.get_ffmpeg_exe()),
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24" if geometry.color_out else "gray",
        "-video_size",
        f"{width}x{height}",
        "-framerate",
        f"{rate.numerator}/{rate.denominator}",
        "-i",
        "pipe:0",
        "-map",
        "0:v:0",
        "-an",
    ]
    if codec == "h264":
        command += [
            "-vf",
            _H264_FILTERS,
            "-c:v",
            "libx264",
            "-preset",
            preset,
            "-crf",
            str(int(crf)),
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
        ]
    else:
        command += [
            "-c:v",
            "ffv1",
            "-level",
            "3",
            "-g",
            "1",
            "-slicecrc",
            "1",
            "-pix_fmt",
            "gbrp" if geometry.color_out else "gray",
        ]
    command += ["-f", muxer, str(output)]
    return command


def _encode(
    output: Path,
    items: Iterator[tuple[int, npt.NDArray[np.uint8]]],
    *,
    geometry: _Geometry,
    fps: float,
    codec: str,
    crf: int,
    preset: str,
    muxer: str,
) -> int:
    """Run ffmpeg, feed it every frame, wait for it; return the frames written."""
    process = subprocess.Popen(  # fixed argv, no shell
        ffmpeg_encode_command(
            output, geometry=geometry, fps=fps, codec=codec, crf=crf, preset=preset, muxer=muxer
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stderr is not None
    stderr_lines: list[str] = []
    stderr_reader = threading.Thread(target=_collect_lines, args=(process.stderr, stderr_lines), daemon=True)
    stderr_reader.start()
    written = 0
    finished = False
    try:
        for index, item in items:
            block = _as_block(item, index=index, geometry=geometry)
            try:
                process.stdin.write(block.data.cast("B"))
            except BrokenPipeError:
                break
            written += block.shape[0]
        else:
            finished = True
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
        process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
            process.wait()
        stderr_reader.join(timeout=10)
    if process.returncode != 0 or not finished:
        reason = _last_line(stderr_lines)
        raise VideoEncodeError(
            f"ffmpeg failed to encode {codec} after {written} frames"
            f" (exit status {process.returncode}: {reason}); check the disk space and"
            " that the folder is writable"
        )
    return written


def _collect_lines(stream: object, sink: list[str]) -> None:
    for raw in stream:  # type: ignore[attr-defined]
        line = raw.decode("utf-8", "replace").strip()
        if line and len(sink) < _STDERR_LINES:
            sink.append(line)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _last_line(lines: list[str]) -> str:
    return lines[-1][:200] if lines else "no message"
