"""The output folder of a job: the files meant for people, and where the default store goes.

::

    OUT/
      store.zarr          the store, unless the job names another (a path or URL)
      background.png      background-1.png, background-2.png ... per source video
      foreground.mp4      compare.mp4, frame-NNNNNN.png samples
      report.json         report.html, scores.json
      scene.mp4, truth/   the demo's synthetic video and its ground truth

Every name is built here; the steps ask this module for paths and never join
strings themselves.  Files are written through :func:`storage.derived.write_file_atomic`
(or the video encoder's own temporary file), so none is ever half-written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from storage.errors import StoreNotWritableError

__all__ = ["OutputFolder"]

_STORE: Final = "store.zarr"
_REPORT_JSON: Final = "report.json"
_REPORT_HTML: Final = "report.html"
_SCORES_JSON: Final = "scores.json"
_SEPARATION_JSON: Final = "separation.json"
_ACTIVITY_CSV: Final = "activity.csv"
_FOREGROUND_MP4: Final = "foreground.mp4"
_COMPARE_MP4: Final = "compare.mp4"
_MASKS_MP4: Final = "masks.mp4"
_DEMO_SCENE: Final = "scene.mp4"
_DEMO_TRUTH: Final = "truth"
_DEMO_SPEC: Final = "scene.json"


@dataclass(frozen=True)
class OutputFolder:
    """A local folder of images, videos and reports.

    Parameters
    ----------
    path : path
        The folder; created by :meth:`prepare`.
    """

    path: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> OutputFolder:
        """The output folder at ``path`` (nothing is created)."""
        return cls(Path(path))

    @property
    def default_store(self) -> Path:
        """Where a job's store goes when none is named: ``OUT/store.zarr``."""
        return self.path / _STORE

    @property
    def report_json(self) -> Path:
        """``report.json``."""
        return self.path / _REPORT_JSON

    @property
    def report_html(self) -> Path:
        """``report.html``."""
        return self.path / _REPORT_HTML

    @property
    def scores_json(self) -> Path:
        """``scores.json`` (the demo's scores)."""
        return self.path / _SCORES_JSON

    @property
    def separation_json(self) -> Path:
        """``separation.json``: what the separation wrote here and how long it took."""
        return self.path / _SEPARATION_JSON

    @property
    def activity_csv(self) -> Path:
        """``activity.csv``: the foreground fraction of every frame."""
        return self.path / _ACTIVITY_CSV

    @property
    def foreground_mp4(self) -> Path:
        """``foreground.mp4``."""
        return self.path / _FOREGROUND_MP4

    @property
    def compare_mp4(self) -> Path:
        """``compare.mp4``."""
        return self.path / _COMPARE_MP4

    @property
    def masks_mp4(self) -> Path:
        """``masks.mp4`` (with ``--masks-video``)."""
        return self.path / _MASKS_MP4

    @property
    def demo_scene(self) -> Path:
        """``scene.mp4``: the demo's synthetic video."""
        return self.path / _DEMO_SCENE

    @property
    def demo_truth(self) -> Path:
        """``truth/``: the demo's ground-truth masks and their frame map."""
        return self.path / _DEMO_TRUTH

    @property
    def demo_spec(self) -> Path:
        """``scene.json``: what the demo's scene was made from, written once it is complete."""
        return self.path / _DEMO_SPEC

    def file(self, name: str) -> Path:
        """Any other file of the folder, by its plain name (no folders in ``name``)."""
        if not name or Path(name).name != name:
            raise ValueError(f"an output file name is a plain name, got {name!r}")
        return self.path / name

    @staticmethod
    def background_names(count: int) -> list[str]:
        """File names of ``count`` background images.

        One image is ``background.png``; several are ``background-1.png``,
        ``background-2.png``... and the first again as ``background.png``, for tools
        that expect one.
        """
        if count == 1:
            return ["background.png"]
        return ["background.png", *(f"background-{i + 1}.png" for i in range(count))]

    @staticmethod
    def sample_name(frame: int) -> str:
        """File name of the sample frame ``frame`` of compare.mp4."""
        return f"frame-{frame:06d}.png"

    def remove_videos(self) -> None:
        """Remove what a separation's encoders write: its videos and sample frames.

        For a separation made without videos, so that none of another separation's
        stays beside its masks and report.
        """
        for path in (self.foreground_mp4, self.compare_mp4, self.masks_mp4):
            path.unlink(missing_ok=True)
        for path in self.path.glob("frame-*.png"):
            if _SAMPLE_NAME.match(path.name):
                path.unlink(missing_ok=True)

    def previous_report(self) -> dict[str, Any] | None:
        """The folder's ``report.json`` as a dict, or None when it is absent or unreadable."""
        return _json_object(self.report_json)

    def shown_separation(self, record: Mapping[str, Any]) -> dict[str, Any] | None:
        """The folder's ``separation.json`` when its videos are of this separation, else None.

        ``record`` is the stored separation's record as attributes
        (:meth:`storage.derived.SeparationRecord.as_attrs`): the file must hold every one
        of them with the same value (the factors' write, the threshold, the clean-up,
        the shadows' setting, ratio and rule, ...).  The file is written after the
        videos, so a separation killed before its videos leaves the previous one's
        record, and a folder written by a separation with other settings (``separate
        --out`` elsewhere, then ``run``) does not stand for this one.
        """
        shown = _json_object(self.separation_json)
        if shown is None or any(shown.get(key) != value for key, value in record.items()):
            return None
        return shown

    def refuse_a_file(self) -> None:
        """Refuse, without creating anything, a folder path where a file stands.

        Raises
        ------
        StoreNotWritableError
            A file (not a folder) is at the path.
        """
        if self.path.exists() and not self.path.is_dir():
            raise StoreNotWritableError(f"the output folder {self.path} is a file; choose another --out")

    def prepare(self) -> Path:
        """Create the folder (and its parents); return its path.

        Raises
        ------
        StoreNotWritableError
            The folder cannot be created, or a file stands in its place.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            self.refuse_a_file()
            raise StoreNotWritableError(
                f"cannot create the output folder {self.path} (a file is in its way); choose another --out"
            ) from None
        except OSError as exc:
            raise StoreNotWritableError(
                f"cannot create the output folder {self.path} ({exc.strerror or exc}); "
                "choose a writable --out"
            ) from None
        self._remove_stale_temporaries()
        return self.path

    def _remove_stale_temporaries(self) -> None:
        """Delete temporaries a killed writer left here: ``.<file>.<random>[.partial]``.

        Only hidden files named after a file this folder holds, and only when nothing
        has written to them for ``STALE_TEMPORARY_S``: a live writer (another command
        writing this folder) keeps its temporary fresh, and a video encoder writes
        every few frames.
        """
        now = time.time()
        for candidate in self.path.glob(".*"):
            if not candidate.is_file() or not _is_temporary_name(candidate.name):
                continue
            with contextlib.suppress(OSError):
                if now - candidate.stat().st_mtime > STALE_TEMPORARY_S:
                    candidate.unlink()


def _json_object(path: Path) -> dict[str, Any] | None:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


STALE_TEMPORARY_S = 600.0
"""Seconds without a write after which an atomic-write temporary counts as abandoned."""

_SAMPLE_NAME = re.compile(r"^frame-[0-9]{6,}\.png$")
_TEMPORARY_NAME = re.compile(r"^\..+\.(?:mp4|png|json|html|csv)\.[A-Za-z0-9_]{6,}(?:\.partial)?$")


def _is_temporary_name(name: str) -> bool:
    """True for the temporaries of :func:`storage.derived.write_file_atomic` and the encoder."""
    return _TEMPORARY_NAME.match(name) is not None
