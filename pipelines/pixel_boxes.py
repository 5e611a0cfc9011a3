"""The part of a frame worth working on: the bounding box of a mask's pixels, with a margin.

Per-frame rules that touch few pixels (a shadow's edge, the places a clean-up fills, the
holes of a plate) work on this box instead of the whole frame.  Pure OpenCV; no I/O.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["padded_box"]


def padded_box(mask: npt.NDArray[np.bool_ | np.uint8], *, margin: int) -> tuple[slice, slice] | None:
    """(rows, columns) slices of ``mask``'s true pixels grown by ``margin``, clipped to the frame.

    ``mask`` is (y, x) bool or uint8; None when it holds no true pixel.  O(y x) to
    find the box (OpenCV's ``boundingRect``), no copy.
    """
    x, y, box_width, box_height = cv2.boundingRect(np.ascontiguousarray(mask).view(np.uint8))
    if box_width == 0:
        return None
    height, width = mask.shape
    return (
        slice(max(y - margin, 0), min(y + box_height + margin, height)),
        slice(max(x - margin, 0), min(x + box_width + margin, width)),
    )
