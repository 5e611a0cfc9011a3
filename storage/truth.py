"""Read ground-truth masks from disk, in the two layouts vidsvd knows.

``masks``: a folder of binary images plus a CSV that maps each image to its frame
    (0-based).  Two flavours are read:

    - the one :func:`pipelines.synthetic.write_scene` writes: ``FOLDER/frame_map.csv``
      with the header ``mask,frame`` and file names relative to the folder;
    - the one of ``bmc2012-video003`` in the shared data: ``gt_frame_map.csv`` *beside*
      the folder, with the columns ``mask_file`` and ``frame_index_0based`` (and
      others, ignored) and paths relative to the CSV (``private_truth/1.bmp``).

    Mask paths are looked up relative to the CSV's folder first, then to the masks'
    folder.  Images are read with Pillow and converted to 8-bit gray; any format
    Pillow reads works (PNG, BMP, ...).

``cdnet``: the CDnet 2014 layout [1]_: ``FOLDER/groundtruth/gt000001.png`` (1-based
    frame numbers, six digits) and ``FOLDER/temporalROI.txt`` holding ``first last``
    (1-based, inclusive); only the frames in that range are scored.

References
----------
.. [1] Y. Wang, P.-M. Jodoin, F. Porikli, J. Konrad, Y. Benezeth and P. Ishwar,
   "CDnet 2014: An Expanded Change Detection Benchmark Dataset", CVPR Workshops 2014.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from storage.derived import write_file_atomic
from storage.errors import InvalidParameterError, SourceNotFoundError, SourceNotReadableError

__all__ = [
    "CDNET_GROUNDTRUTH_DIR",
    "CDNET_ROI_NAME",
    "FRAME_COLUMNS",
    "FRAME_MAP_HEADER",
    "FRAME_MAP_NAME",
    "MASK_COLUMNS",
    "CdnetTruth",
    "TruthMaskWriter",
    "read_cdnet_truth",
    "read_mask_image",
    "read_truth_masks",
]

FRAME_MAP_NAME: Final = "frame_map.csv"
"""Default name of the CSV inside a masks folder (what write_scene writes)."""
FRAME_MAP_HEADER: Final = ("mask", "frame")
"""The header :class:`TruthMaskWriter` writes."""
MASK_COLUMNS: Final = ("mask", "mask_file")
"""Accepted names of the CSV column holding the mask file (the first present is used)."""
FRAME_COLUMNS: Final = ("frame", "frame_index_0based")
"""Accepted names of the CSV column holding the 0-based frame index."""
CDNET_GROUNDTRUTH_DIR: Final = "groundtruth"
CDNET_ROI_NAME: Final = "temporalROI.txt"
_CDNET_PATTERN: Final = re.compile(r"gt(\d+)\.png")

MaskPath = str | os.PathLike[str]


class CdnetTruth(NamedTuple):
    """What :func:`read_cdnet_truth` found.

    Attributes
    ----------
    frames : tuple of int
        0-based indices of the scored frames (those in ``temporalROI.txt``), ascending.
    load : callable
        ``load(frame)`` reads the mask of one of ``frames``: uint8 (y, x) CDnet values.
    """

    frames: tuple[int, ...]
    load: Callable[[int], npt.NDArray[np.uint8]]


def read_mask_image(path: MaskPath) -> npt.NDArray[np.uint8]:
    """Read one mask image as uint8 (y, x) gray, whatever its format and mode.

    Raises
    ------
    SourceNotFoundError
        No such file.
    SourceNotReadableError
        Pillow cannot read it as an image.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceNotFoundError(f"mask {path} does not exist")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise SourceNotReadableError(f"cannot read the mask {path} as an image: {error}") from error


def read_truth_masks(
    folder: MaskPath,
    *,
    frame_map: MaskPath | None = None,
    shape: tuple[int, int] | None = None,
) -> list[tuple[int, npt.NDArray[np.uint8]]]:
    """Read a folder of mask images and the CSV that maps each to its frame.

    Parameters
    ----------
    folder : str or path-like
        The folder of the masks.
    frame_map : str or path-like, optional
        The CSV; default ``folder / "frame_map.csv"``.  Its header names the mask
        column (``mask`` or ``mask_file``) and the frame column (``frame`` or
        ``frame_index_0based``); other columns are ignored.
    shape : (int, int), optional
        (height, width) every mask must have, e.g. the video's.

    Returns
    -------
    list of (int, ndarray)
        (0-based frame index, mask) sorted by frame; each mask uint8 (y, x) with the
        file's gray values (0/255 for binary masks).  All masks are in memory: a few
        hundred small masks, not a video's worth.

    Raises
    ------
    SourceNotFoundError
        No folder, no CSV, or a mask the CSV lists is missing.
    SourceNotReadableError
        A mask is not an image Pillow reads.
    InvalidParameterError
        The CSV lacks a mask or frame column, has a bad frame index or the same frame
        twice, or masks differ in size (from each other or from ``shape``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceNotFoundError(f"the truth folder {folder} does not exist; give the folder of the masks")
    csv_path = Path(frame_map) if frame_map is not None else folder / FRAME_MAP_NAME
    if not csv_path.is_file():
        hint = (
            "pass the CSV that maps masks to frames (--frame-map CSV; frame_map= in Python)"
            if frame_map is None
            else "check the path of the frame map"
        )
        raise SourceNotFoundError(f"no frame map {csv_path}: {hint}")
    entries = _read_frame_map(csv_path)
    masks: list[tuple[int, npt.NDArray[np.uint8]]] = []
    for name, frame in entries:
        path = _locate(name, csv_path.parent, folder)
        if path is None:
            raise SourceNotFoundError(
                f"{csv_path} lists the mask {name}, found neither in {csv_path.parent} nor in {folder}"
            )
        mask = read_mask_image(path)
        expected = shape if shape is not None else (masks[0][1].shape if masks else None)
        if expected is not None and mask.shape != tuple(expected):
            raise InvalidParameterError(
                f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but should be"
                f" {expected[1]}x{expected[0]} (width x height); use masks at the video's size"
            )
        masks.append((frame, mask))
    masks.sort(key=lambda item: item[0])
    return masks


def read_cdnet_truth(folder: MaskPath) -> CdnetTruth:
    """Find the scored ground-truth frames of a CDnet 2014 video folder.

    Parameters
    ----------
    folder : str or path-like
        A CDnet video folder (e.g. ``dataset2014/dataset/baseline/highway``) holding
        ``groundtruth/gt000001.png``, ... and ``temporalROI.txt``.

    Returns
    -------
    CdnetTruth
        ``frames``: the 0-based indices of the frames in the temporal ROI (file
        ``gtNNNNNN.png`` is frame ``NNNNNN - 1``); ``load(frame)``: reads one mask
        when called (nothing is read now but the file list and the ROI).

    Raises
    ------
    SourceNotFoundError
        No folder, no ``groundtruth`` folder, no ``temporalROI.txt``, or a frame of
        the ROI without its mask file.
    InvalidParameterError
        ``temporalROI.txt`` does not hold two frame numbers ``first last`` with
        1 <= first <= last.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceNotFoundError(f"the CDnet folder {folder} does not exist")
    truth_dir = folder / CDNET_GROUNDTRUTH_DIR
    if not truth_dir.is_dir():
        raise SourceNotFoundError(
            f"no {CDNET_GROUNDTRUTH_DIR}/ folder in {folder}; give a CDnet video folder"
            " (the one holding groundtruth/ and temporalROI.txt)"
        )
    roi_path = folder / CDNET_ROI_NAME
    if not roi_path.is_file():
        raise SourceNotFoundError(f"no {CDNET_ROI_NAME} in {folder}; a CDnet video folder has one")
    first, last = _read_roi(roi_path)
    files: dict[int, Path] = {}
    for path in truth_dir.iterdir():
        match = _CDNET_PATTERN.fullmatch(path.name)
        if match:
            files[int(match.group(1))] = path
    missing = [number for number in range(first, last + 1) if number not in files]
    if missing:
        raise SourceNotFoundError(
            f"{len(missing)} frames of the temporal ROI {first}-{last} have no mask in {truth_dir},"
            f" the first gt{missing[0]:06d}.png"
        )
    frames = tuple(number - 1 for number in range(first, last + 1))
    scored = frozenset(frames)

    def load(frame: int) -> npt.NDArray[np.uint8]:
        if frame not in scored:
            raise InvalidParameterError(
                f"frame {frame} is outside the temporal ROI (frames {first - 1}..{last - 1},"
                " 0-based); score only CdnetTruth.frames"
            )
        return read_mask_image(files[frame + 1])

    return CdnetTruth(frames=frames, load=load)


def _read_frame_map(csv_path: Path) -> list[tuple[str, int]]:
    with csv_path.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.reader(stream)
        header = [cell.strip() for cell in next(reader, [])]
        mask_column = next((header.index(c) for c in MASK_COLUMNS if c in header), None)
        frame_column = next((header.index(c) for c in FRAME_COLUMNS if c in header), None)
        if mask_column is None or frame_column is None:
            raise InvalidParameterError(
                f"{csv_path} needs a mask column ({' or '.join(MASK_COLUMNS)}) and a frame column"
                f" ({' or '.join(FRAME_COLUMNS)}) in its header, got {','.join(header) or 'nothing'}"
            )
        entries: list[tuple[str, int]] = []
        seen: dict[int, str] = {}
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= max(mask_column, frame_column):
                raise InvalidParameterError(f"{csv_path} line {line} has too few columns: {','.join(row)}")
            name, text = row[mask_column].strip(), row[frame_column].strip()
            try:
                frame = int(text)
            except ValueError:
                frame = -1
            if frame < 0:
                raise InvalidParameterError(
                    f"{csv_path} line {line}: frame {text!r} is not a 0-based frame index"
                )
            if frame in seen:
                raise InvalidParameterError(
                    f"{csv_path} gives frame {frame} two masks, {seen[frame]} and {name}; keep one"
                )
            seen[frame] = name
            entries.append((name, frame))
    return entries


def _locate(name: str, *folders: Path) -> Path | None:
    for base in folders:
        path = base / name
        if path.is_file():
            return path
    return None


def _read_roi(path: Path) -> tuple[int, int]:
    parts = path.read_text(encoding="utf-8").split()
    try:
        first, last = (int(p) for p in parts)
    except ValueError:
        first, last = 0, -1
    if not 1 <= first <= last:
        raise InvalidParameterError(
            f"{path} must hold two 1-based frame numbers 'first last' with first <= last,"
            f" got {' '.join(parts)!r}"
        )
    return first, last


class TruthMaskWriter:
    """Write a masks folder as :func:`read_truth_masks` reads it, one mask at a time.

    ``NNNNNN.png`` per scored frame (8-bit gray, named by the 0-based frame index, six
    digits or more), then ``frame_map.csv`` (header ``mask,frame``) written last: a
    folder without it is an interrupted write, which the reader refuses.  Every file
    goes through a temporary name, so none is half-written.

    Parameters
    ----------
    folder : str or path-like
        Created if needed; a stale ``frame_map.csv`` in it is removed first.
    n_frames : int
        Frames of the video (how many digits the names need).
    """

    def __init__(self, folder: MaskPath, *, n_frames: int) -> None:
        self.folder = Path(folder)
        self.frame_map = self.folder / FRAME_MAP_NAME
        self.folder.mkdir(parents=True, exist_ok=True)
        self.frame_map.unlink(missing_ok=True)
        self._digits = max(6, len(str(max(n_frames, 1) - 1)))
        self.rows: list[tuple[str, int]] = []

    def add(self, frame: int, mask: npt.NDArray[np.uint8]) -> None:
        """Write the mask (y, x) uint8 of ``frame`` as PNG."""
        name = f"{frame:0{self._digits}d}.png"
        buffer = io.BytesIO()
        Image.fromarray(mask).save(buffer, format="PNG")
        write_file_atomic(self.folder / name, buffer.getvalue())
        self.rows.append((name, int(frame)))

    def finish(self) -> Path:
        """Write ``frame_map.csv`` (the last file); return its path."""
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\r\n")
        writer.writerow(FRAME_MAP_HEADER)
        writer.writerows(self.rows)
        write_file_atomic(self.frame_map, text.getvalue())
        return self.frame_map
