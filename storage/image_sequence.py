"""A folder of still images as one video source: CDnet's ``input/``, exported frames.

Datasets of surveillance footage often ship frames, not videos: CDnet 2014 keeps
``in000001.jpg``, ``in000002.jpg``, ... in each video's ``input`` folder, and tools
export ``1.png``, ``2.png``, ...  Such a folder is read as a video whose frames are
its images in natural order (numbers compared as numbers, so ``2.png`` comes before
``10.png``), at :data:`SEQUENCE_FPS` frames per second, every image once.

:func:`read_image_sequence` lists and checks the images (one size for all, from the
file headers, with Pillow); :func:`ffconcat_list` writes the list ffmpeg's ``concat``
demuxer decodes them from, so the images go through the same ffmpeg filters (rate,
size, gray) as the frames of a video file.  The folder's content hash, as a video
file's sha256, is :func:`storage.provenance.sequence_sha256`.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image, UnidentifiedImageError

from storage.errors import SourceNotReadableError

__all__ = [
    "IMAGE_SUFFIXES",
    "SEQUENCE_FPS",
    "ImageSequence",
    "ffconcat_list",
    "first_damaged",
    "natural_key",
    "read_image_sequence",
]

IMAGE_SUFFIXES: Final = (".bmp", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff")
"""Files of a folder read as frames (case-insensitive); other files are ignored."""

SEQUENCE_FPS: Final = 25.0
"""Frame rate of a folder of images: ffmpeg's default for images (a folder records none).

``--fps`` resamples from it, as from a video's native rate."""


@dataclass(frozen=True, kw_only=True)
class ImageSequence:
    """The images of a folder, in frame order.

    Attributes
    ----------
    folder : pathlib.Path
        The folder, absolute.
    images : tuple of pathlib.Path
        Its image files in natural order of their names, absolute.
    width, height : int
        Size of every image, from its header (before any orientation tag).
    size_bytes : int
        Bytes of all images together.
    """

    folder: Path
    images: tuple[Path, ...]
    width: int
    height: int
    size_bytes: int


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key of a file name: runs of digits compare as numbers, the rest ignoring case.

    ``frame2.png`` sorts before ``frame10.png``; ``in000002.jpg`` before ``in000010.jpg``.
    """
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(part)) if part.isdigit() else (1, part.lower()) for part in parts if part)


def read_image_sequence(folder: str | os.PathLike[str]) -> ImageSequence:
    """List a folder's images in frame order and check that they make one video.

    Reads each image's header only (Pillow): O(images) small reads, no decoding.

    Raises
    ------
    SourceNotReadableError
        The folder holds no image (:data:`IMAGE_SUFFIXES`), an image's header cannot be
        read, or two images differ in size.
    """
    base = Path(folder).resolve()
    images = tuple(
        sorted(
            (entry for entry in base.iterdir() if _is_image_file(entry)),
            key=lambda path: natural_key(path.name),
        )
    )
    if not images:
        frames = base / "input"  # CDnet 2014: VIDEO/input/in000001.jpg, VIDEO/groundtruth/...
        hint = f" (for a CDnet folder, give {frames})" if frames.is_dir() else ""
        raise SourceNotReadableError(
            f"{base} is a folder without images ({', '.join(IMAGE_SUFFIXES)});"
            f" give a video file or a folder of frames{hint}"
        )
    unlisted = next((image for image in images if "\n" in image.name or "\r" in image.name), None)
    if unlisted is not None:  # ffmpeg's concat list is one file per line
        raise SourceNotReadableError(
            f"{unlisted!r} has a line break in its name, which ffmpeg cannot read from a list; rename it"
        )
    first_size = _image_size(images[0])
    for image in images[1:]:
        size = _image_size(image)
        if size != first_size:
            raise SourceNotReadableError(
                f"{image} is {size[0]}x{size[1]} but {images[0].name} is {first_size[0]}x{first_size[1]};"
                " the frames of a folder must all have one size"
            )
    return ImageSequence(
        folder=base,
        images=images,
        width=first_size[0],
        height=first_size[1],
        size_bytes=sum(image.stat().st_size for image in images),
    )


@contextmanager
def ffconcat_list(images: tuple[Path, ...] | list[Path]) -> Iterator[str]:
    """A temporary ffconcat file listing the images, one frame each; removed on exit.

    Give ffmpeg ``-f concat -safe 0 -i PATH``.  Each image lasts ``1 / SEQUENCE_FPS``
    seconds, so frame n has the time stamp ``n / SEQUENCE_FPS``.
    """
    duration = f"{1 / SEQUENCE_FPS:.6f}"
    lines = ["ffconcat version 1.0"]
    for image in images:
        quoted = str(image).replace("'", "'\\''")  # ffconcat's quoting of a single quote
        lines += [f"file '{quoted}'", f"duration {duration}"]
    handle, path = tempfile.mkstemp(prefix="vidsvd-frames-", suffix=".ffconcat")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as listing:
            listing.write("\n".join(lines) + "\n")
        yield path
    finally:
        os.unlink(path)


def first_damaged(images: tuple[Path, ...] | list[Path]) -> Path | None:
    """The first image whose pixels do not decode (Pillow), or None: to name it in an error.

    Decodes every image up to it: call it once something failed, not on every read.
    """
    for image in images:
        try:
            with Image.open(image) as opened:
                opened.load()
        except (OSError, UnidentifiedImageError, ValueError):
            return image
    return None


def _is_image_file(entry: Path) -> bool:
    return entry.suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith(".") and entry.is_file()


def _image_size(image: Path) -> tuple[int, int]:
    try:
        with Image.open(image) as opened:
            return int(opened.size[0]), int(opened.size[1])
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise SourceNotReadableError(
            f"{image} is not an image that can be read ({error}); remove or replace it"
        ) from None
