"""Classic background subtractors to compare the SVD masks with: OpenCV's MOG2 and KNN.

Both model each pixel's recent history (a mixture of Gaussians [1]_, or its k nearest
samples [2]_) and learn as they go, so they must see every frame in order, from the
first: :func:`run_baseline` streams over all frames and keeps the masks of the frames
that are scored only.  OpenCV's defaults are used (history 500 frames, shadow
detection on); a pixel marked as shadow (127) counts as background, as CDnet scores
shadows.

OpenCV (opencv-python-headless) is a dependency of vidsvd: the masks' clean-up uses it
too.

References
----------
.. [1] Z. Zivkovic, "Improved adaptive Gaussian mixture model for background
   subtraction", ICPR 2004.
.. [2] Z. Zivkovic and F. van der Heijden, "Efficient adaptive density estimation per
   image pixel for the task of background subtraction", Pattern Recognition Letters
   27(7), 773-780, 2006.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, Literal

import cv2
import numpy as np
import numpy.typing as npt

from storage.errors import InvalidParameterError

__all__ = ["BASELINES", "run_baseline"]

BASELINES: Final = ("mog2", "knn")
"""Names :func:`run_baseline` accepts."""
_FOREGROUND: Final = 255  # OpenCV marks foreground 255, shadows 127, background 0
_CHANNELS: Final = 3


def run_baseline(
    name: Literal["mog2", "knn"],
    frames: Iterable[npt.NDArray[np.uint8]],
    *,
    wanted_frames: set[int],
) -> dict[int, npt.NDArray[np.bool_]]:
    """Run an OpenCV background subtractor over a video and keep some of its masks.

    Parameters
    ----------
    name : {"mog2", "knn"}
        ``cv2.createBackgroundSubtractorMOG2`` or ``cv2.createBackgroundSubtractorKNN``,
        default parameters.
    frames : iterable of ndarray
        Every frame of the video in order, each uint8 (y, x) gray (or (y, x, 3)),
        e.g. the chunks of the stored video unpacked one frame at a time.
    wanted_frames : set of int
        0-based indices of the frames whose masks to return (the frames that have
        ground truth).

    Returns
    -------
    dict of int to ndarray of bool
        For each wanted frame the iterable reached, its mask (y, x): True where the
        subtractor says foreground (255), False for background and shadow.

    Raises
    ------
    InvalidParameterError
        An unknown name, OpenCV not installed, or a frame that is not uint8
        (y, x[, 3]).

    Notes
    -----
    Streaming: one frame and the subtractor's model (for MOG2 a few floats per
    pixel and mixture component; for KNN its sample history) are in memory, plus the
    kept masks.  Iteration stops after the last wanted frame.
    """
    if name not in BASELINES:
        raise InvalidParameterError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    subtractor = _subtractor(name)
    wanted = {int(t) for t in wanted_frames}
    last = max(wanted, default=-1)
    found: dict[int, npt.NDArray[np.bool_]] = {}
    if last < 0:
        return found
    for index, frame in enumerate(frames):
        pixels = np.asarray(frame)
        color = pixels.ndim == _CHANNELS and pixels.shape[-1] == _CHANNELS
        if pixels.dtype != np.uint8 or (pixels.ndim != 2 and not color):
            raise InvalidParameterError(
                f"frame {index} must be uint8 (y, x) or (y, x, 3), got {pixels.dtype} {pixels.shape}"
            )
        mask = subtractor.apply(np.ascontiguousarray(pixels))
        if index in wanted:
            found[index] = np.asarray(mask) == _FOREGROUND
        if index >= last:
            break
    return found


def _subtractor(name: str) -> Any:
    if name == "mog2":
        return cv2.createBackgroundSubtractorMOG2()
    return cv2.createBackgroundSubtractorKNN()
