"""What ffmpeg says about a source before decoding it: codec, rate, size, duration.

A source is a video file or a folder of images (:mod:`storage.image_sequence`), which
ffmpeg reads through its ``concat`` demuxer.  :func:`probe_video` runs imageio-ffmpeg's
bundled binary once per source; :mod:`storage.video_decoder` decodes what it describes.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg

from storage.errors import SourceNotFoundError, SourceNotReadableError
from storage.image_sequence import ffconcat_list, read_image_sequence
from storage.provenance import source_sha256

__all__ = [
    "SourceInfo",
    "ffmpeg_executable",
    "ffmpeg_reason",
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
        Absolute path of the file (or folder of images).
    size_bytes : int
        Size of the file in bytes (of all the images).
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
    images : tuple of str
        For a folder of images, its images in frame order (absolute paths); empty for
        a video file.
    """

    path: str
    size_bytes: int
    codec: str
    fps: float
    width: int
    height: int
    duration_s: float
    average_fps: float = 0.0
    images: tuple[str, ...] = ()

    def content_sha256(self) -> str:
        """Hex sha256 of the file, or of the folder's images in order (reads them all)."""
        return source_sha256(self.path, images=self.images)

    def same_content(self, *, size_bytes: int, sha256: str) -> bool:
        """Whether this is the source recorded with that size and sha256 (hashed only if sizes agree)."""
        return self.size_bytes == size_bytes and self.content_sha256() == sha256

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

    A folder is a sequence of images (:func:`storage.image_sequence.read_image_sequence`):
    one frame per image at :data:`storage.image_sequence.SEQUENCE_FPS`.

    The size is that of the frames ffmpeg delivers: a video tagged with a rotation
    or flip (a display matrix, as phones write) is decoded upright, as players show
    it, so a 320x240 stream tagged with a quarter turn gives 240x320 frames.  The
    size is read from one decoded frame, so the tag's spelling does not matter.

    Raises
    ------
    SourceNotFoundError
        The path does not exist.
    SourceNotReadableError
        ffmpeg finds no video stream in the file; a folder without images, or with
        images of different sizes.
    """
    file = Path(path)
    if not file.exists():
        raise SourceNotFoundError(f"video not found: {file} (check the path)")
    if not os.access(file, os.R_OK):
        raise SourceNotReadableError(f"cannot read {file}: permission denied")
    if file.is_dir():
        sequence = read_image_sequence(file)
        images = tuple(str(image) for image in sequence.images)
        with ffconcat_list(sequence.images) as listing:
            info = _probe(file, ["-f", "concat", "-safe", "0", "-i", listing])
        return dataclasses.replace(
            info,
            path=str(sequence.folder),
            size_bytes=sequence.size_bytes,
            codec=f"{info.codec} images",
            images=images,
        )
    return _probe(file, ["-i", str(file.absolute())])  # never a leading "-" ffmpeg reads as an option


def _probe(file: Path, source: list[str]) -> SourceInfo:
    # One run prints the input's header and, after decoding one frame, the output
    # stream as ffmpeg delivers it: rotated or flipped by a display-matrix tag.
    header = subprocess.run(
        [
            ffmpeg_executable(),
            "-hide_banner",
            "-nostdin",
            *source,
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
        reason = ffmpeg_reason(header)
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


def ffmpeg_reason(text: str) -> str:
    """The line of ffmpeg's stderr that says what went wrong (its banner skipped), cut to 200."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    interesting = [ln for ln in lines if not ln.startswith(("ffmpeg version", "built with"))]
    return (interesting or lines or ["no details"])[-1][:200]
