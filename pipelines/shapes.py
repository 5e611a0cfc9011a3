"""The shapes of the vocabulary, checked: whole numbers, colour frames, columns as images.

Small checks every pure module shares; each raises
:class:`storage.errors.InvalidParameterError` with a message that names what is wrong.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from storage.errors import InvalidParameterError

__all__ = ["CHANNELS", "image_shape", "is_color", "is_int", "require_gray_video"]

CHANNELS: Final = 3
"""Values per pixel of a colour frame (RGB)."""

_COLOR_NDIM: Final = 4


def is_int(value: object) -> bool:
    """True for Python and numpy integers, False for bools and everything else."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_color(frames: Any) -> bool:
    """True when ``frames`` has shape (frame, y, x, 3)."""
    return bool(frames.ndim == _COLOR_NDIM and frames.shape[-1] == CHANNELS)


def image_shape(n_pixels: int, height: int, width: int) -> tuple[int, ...]:
    """The image shape of a column of ``n_pixels`` values: (height, width) or (height, width, 3).

    Raises
    ------
    InvalidParameterError
        A height or width that is not a positive integer, or ``n_pixels`` that is
        neither ``height * width`` (gray) nor ``height * width * 3`` (colour).
    """
    if not (is_int(height) and is_int(width)) or height < 1 or width < 1:
        raise InvalidParameterError(f"height and width must be positive integers, got {height!r}, {width!r}")
    if n_pixels == height * width:
        return (int(height), int(width))
    if n_pixels == height * width * CHANNELS:
        return (int(height), int(width), CHANNELS)
    raise InvalidParameterError(
        f"a column of {n_pixels} pixels is not a {width}x{height} frame (needs {height * width} gray or "
        f"{height * width * CHANNELS} color values); give the video's height and width"
    )


def require_gray_video(frames: Any) -> None:
    """Refuse anything but a gray video as a dask array: (frame, y, x) uint8.

    Raises
    ------
    InvalidParameterError
        Another type, shape or dtype (a colour video among them).
    """
    import dask.array as da

    if not isinstance(frames, da.Array) or frames.ndim != 3 or is_color(frames) or frames.dtype != np.uint8:
        raise InvalidParameterError(
            "the median and robust models need the gray video (frame, y, x) uint8; ingest without --color"
        )
