"""Pure numpy kernels that turn (original, foreground, mask) blocks into pictures people look at.

Every function takes and returns numpy arrays of whole frames, (frame, y, x[, channel]),
and does no I/O: the streamed encoder (:mod:`pipelines.encode_stream`) and the steps
call them block by block, so memory is a few blocks whatever the video's length.
"""

from __future__ import annotations

import functools
import math
from typing import TypeVar

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "COMPARE_LABELS",
    "COMPARE_MAX_WIDTH",
    "LABEL_MIN_PANEL_WIDTH",
    "background_from",
    "compare_panels",
    "label_panels",
    "shrink",
    "visible_foreground",
]

COMPARE_MAX_WIDTH = 1920
"""compare.mp4 is at most this wide, a full-HD screen's width: its four panels are
shrunk by an integer factor when the frames are wider than a quarter of it (1280x720
footage gives four 426x240 panels).  A wider video is scaled down by the player on
most screens anyway; at 2560 (four 640x360 panels) it held as many pixels as the
foreground video itself, and x264 and the panels' shrinking took 0.7 core-seconds
more of `run` on a 341-frame 720p clip (README, "Benchmarks")."""


def visible_foreground(foreground: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """Map foreground grey levels (-255..255) to a visible image: 128 is no change.

    Parameters
    ----------
    foreground : ndarray of int16, shape (frame, y, x)
        Frame minus background, in grey levels.

    Returns
    -------
    ndarray of uint8, same shape
        ``128 + floor(foreground / 2)`` clipped to 0..255.  No temporary.
    """
    # 0.5 * f + 127.75, rounded half to even and saturated, is exactly 128 + floor(f / 2)
    # for every int16 f (tested over all of them): one pass of OpenCV's kernel.
    if foreground.size == 0:
        return np.empty(foreground.shape, dtype=np.uint8)
    rows = _frame_rows(foreground)
    visible = cv2.addWeighted(rows, 0.5, rows, 0.0, 127.75, dtype=cv2.CV_8U)
    return np.asarray(visible, dtype=np.uint8).reshape(foreground.shape)


def background_from(
    original: npt.NDArray[np.uint8], foreground: npt.NDArray[np.int16]
) -> npt.NDArray[np.uint8]:
    """The original minus the foreground, clipped to 0..255.

    Parameters
    ----------
    original : ndarray of uint8, shape (frame, y, x)
    foreground : ndarray of int16, same shape

    Returns
    -------
    ndarray of uint8, same shape
        The background as the separation saw it: ``original - foreground`` clipped
        to 0..255.  No temporary.
    """
    # OpenCV subtracts uint8 - int16 exactly and saturates to uint8 (tested over all pairs).
    if original.size == 0:
        return np.empty(original.shape, dtype=np.uint8)
    background = cv2.subtract(_frame_rows(original), _frame_rows(foreground), dtype=cv2.CV_8U)
    return np.asarray(background, dtype=np.uint8).reshape(original.shape)


_Number = TypeVar("_Number", np.uint8, np.int16)


def _frame_rows(frames: npt.NDArray[_Number]) -> npt.NDArray[_Number]:
    """A block (frame, ...) as a 2-D array, one row per frame: OpenCV's elementwise kernels take it."""
    return np.ascontiguousarray(frames).reshape(frames.shape[0], -1)


def shrink(
    frames: npt.NDArray[np.uint8], factor: int, *, out: npt.NDArray[np.uint8] | None = None
) -> npt.NDArray[np.uint8]:
    """Means of ``factor x factor`` blocks: (n, y, x[, c]) -> (n, y // factor, x // factor[, c]).

    Edge rows and columns that do not fill a block are dropped.  Each frame is
    resampled by OpenCV's area interpolation at the integer factor, which takes the
    block means in fixed point: the rounded mean, or one grey level from it (for
    display only: the panels of compare.mp4).  14 times faster than summing strided
    slices in numpy.  When ``factor`` divides the height, the frames are stacked into
    one tall image and resampled in one call (no block straddles two frames).  ``out``,
    when given, receives the result (it may be a view, such as one panel of a wider
    frame); without it, factor 1 returns ``frames`` themselves.  Memory: the output.
    """
    n, height, width = frames.shape[:3]
    rows, cols = height // factor, width // factor
    if factor <= 1 and out is None:
        return frames
    if out is None:
        out = np.empty((n, rows, cols, *frames.shape[3:]), dtype=np.uint8)
    if out.size == 0:
        return out
    if factor <= 1:
        out[...] = frames
        return out
    trimmed = frames[:, : rows * factor, : cols * factor]
    if height == rows * factor and out.strides[0] == rows * out.strides[1]:
        tall = np.ascontiguousarray(trimmed).reshape(n * height, cols * factor, *frames.shape[3:])
        tall_out = out.reshape(n * rows, *out.shape[2:])  # a view: the strides were checked
        cv2.resize(tall, (cols, n * rows), dst=tall_out, interpolation=cv2.INTER_AREA)
        return out
    for index in range(n):
        frame = np.ascontiguousarray(trimmed[index])
        cv2.resize(frame, (cols, rows), dst=out[index], interpolation=cv2.INTER_AREA)
    return out


def compare_panels(
    original: npt.NDArray[np.uint8],
    foreground: npt.NDArray[np.int16],
    mask: npt.NDArray[np.uint8],
    *,
    max_width: int = COMPARE_MAX_WIDTH,
    labels: bool = True,
    visible: npt.NDArray[np.uint8] | None = None,
) -> npt.NDArray[np.uint8]:
    """Original | background | visible foreground | mask, side by side, labelled.

    Parameters
    ----------
    original, foreground, mask : ndarray, shape (frame, y, x)
        uint8, int16 and uint8 (0/255) blocks of the same frames.
    max_width : int
        The panels are shrunk by the smallest integer factor that keeps the four of
        them at most this wide.
    labels : bool
        Write :data:`COMPARE_LABELS` on the panels (see :func:`label_panels`).
    visible : ndarray of uint8, optional
        ``visible_foreground(foreground)``, when the caller has made it already.

    Returns
    -------
    ndarray of uint8, shape (frame, y // f, 4 * (x // f))
        Each panel is shrunk straight into its place (no copy to join them).
    """
    shown = visible_foreground(foreground) if visible is None else visible
    panels = (original, background_from(original, foreground), shown, mask)
    factor = math.ceil(len(panels) * original.shape[2] / max_width)
    n, height, width = original.shape[:3]
    panel_width = width // factor
    side_by_side = np.empty((n, height // factor, len(panels) * panel_width), dtype=np.uint8)
    for index, panel in enumerate(panels):
        shrink(panel, factor, out=side_by_side[:, :, index * panel_width : (index + 1) * panel_width])
    return label_panels(side_by_side, panel_width=panel_width) if labels else side_by_side


COMPARE_LABELS = ("original", "background", "foreground (grey 128: no change)", "mask")
"""The label drawn at the top left of each panel of compare.mp4."""

LABEL_MIN_PANEL_WIDTH = 160
"""Panels narrower than this get no label: it would cover too much of the picture."""


def label_panels(
    frames: npt.NDArray[np.uint8], *, panel_width: int, labels: tuple[str, ...] = COMPARE_LABELS
) -> npt.NDArray[np.uint8]:
    """Write each panel's label in its top-left corner, white on a darkened box, in place.

    ``frames`` is (frame, y, len(labels) * panel_width) uint8; returned for chaining.
    Nothing is drawn when ``panel_width < LABEL_MIN_PANEL_WIDTH`` or the frames are
    too short for a line of text.  Labels are cut to the panel's width.
    """
    if panel_width < LABEL_MIN_PANEL_WIDTH:
        return frames
    for index, text in enumerate(labels):
        stamp = _label_stamp(text)[:, : panel_width - 4]
        height, width = stamp.shape
        if frames.shape[1] < height + 4:
            return frames
        left = index * panel_width + 2
        box = frames[:, 2 : 2 + height, left : left + width]
        box //= 3
        box[:, stamp] = 255
    return frames


@functools.lru_cache(maxsize=16)
def _label_stamp(text: str) -> npt.NDArray[np.bool_]:
    """The pixels of ``text`` in Pillow's default font, with a small margin: (h, w) bool."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    _, _, right, bottom = font.getbbox(text)
    image = Image.new("L", (int(right) + 6, int(bottom) + 3), 0)
    ImageDraw.Draw(image).text((3, 1), text, fill=255, font=font)
    return np.asarray(image) > 64  # antialiased edges count: bolder, legible on video
