"""Provenance of what is written: library versions, file hashes and the video's content fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "BackgroundHash",
    "content_fingerprint",
    "file_sha256",
    "library_versions",
    "sequence_sha256",
    "source_sha256",
]


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape what is written."""
    names = ["vidsvd", "numpy", "zarr", "dask", "distributed", "imageio-ffmpeg"]
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def file_sha256(path: str, *, block_bytes: int = 4 * 2**20) -> str:
    """Return the hex sha256 of a file, read in blocks of ``block_bytes``."""
    digest = hashlib.sha256()
    _add_file(digest, path, block_bytes=block_bytes)
    return digest.hexdigest()


def sequence_sha256(images: Sequence[str | os.PathLike[str]], *, block_bytes: int = 4 * 2**20) -> str:
    """Hex sha256 of a sequence of images: each one's name, length and bytes, in order.

    Renaming, reordering, adding, removing or editing an image changes it.  Reads every
    image once, in blocks of ``block_bytes`` (memory: one block).
    """
    digest = hashlib.sha256()
    for image in map(Path, images):
        name = image.name.encode("utf-8", "surrogateescape")
        digest.update(len(name).to_bytes(8, "little") + name)
        digest.update(image.stat().st_size.to_bytes(8, "little"))
        _add_file(digest, image, block_bytes=block_bytes)
    return digest.hexdigest()


def _add_file(digest: Any, path: str | os.PathLike[str], *, block_bytes: int) -> None:
    with open(path, "rb") as handle:
        while block := handle.read(block_bytes):
            digest.update(block)


def source_sha256(path: str, *, images: Sequence[str] = ()) -> str:
    """Hex sha256 of a source: the video file, or a folder's ``images`` in frame order.

    ``images`` as :func:`storage.video_probe.probe_video` lists them (empty for a
    file); see :func:`sequence_sha256`.
    """
    if images:
        return sequence_sha256(images)
    return file_sha256(path)


class BackgroundHash:
    """Hash a source (:func:`source_sha256`) in a thread while ffmpeg streams it."""

    def __init__(self, path: str, *, images: Sequence[str] = ()) -> None:
        self._result: str | None = None
        self._thread = threading.Thread(target=self._run, args=(path, tuple(images)), daemon=True)
        self._thread.start()

    def _run(self, path: str, images: tuple[str, ...]) -> None:
        self._result = source_sha256(path, images=images)

    def result(self) -> str:
        """The file's hex sha256, once the thread is done."""
        self._thread.join()
        assert self._result is not None
        return self._result


def content_fingerprint(shape: Sequence[int], parameters: Any, sources: Sequence[dict[str, Any]]) -> str:
    """sha256 of everything that determines the stored bytes.

    The same source files (by sha256), decoded by the same ffmpeg with the same
    parameters, give the same frames, so this identifies the array's content without
    hashing every frame again (that would cost as much CPU as the compression).
    """
    content = {
        "shape": [int(n) for n in shape],
        "dtype": "uint8",
        "parameters": parameters,
        "sources": [{"sha256": s["sha256"], "frame_range": s["frame_range"]} for s in sources],
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
