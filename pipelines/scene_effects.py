"""What happens to a whole synthetic frame: the light, the camera's shake and rain.

The scene (:mod:`pipelines.synthetic`) paints its objects over a still background;
these are the changes of every pixel at once that a real camera adds, each a pure
function of the scene and the frame's index (its own random stream per frame, so that
frames render in any order):

- :func:`illumination_gain`: one slow cycle of global brightness;
- :func:`sweeping_shade`: the shade of a building crossing the view;
- :func:`camera_shift` and :func:`shaken`: a camera on a pole in the wind, moved by a
  few whole pixels from frame to frame (CDnet's camera jitter);
- :func:`rain_streaks`: drops falling in front of everything, bright short streaks.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final, TypeVar

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from pipelines.synthetic import SceneSpec

__all__ = [
    "MAX_JITTER",
    "MAX_PRECIPITATION",
    "RAIN_GAIN",
    "camera_shift",
    "illumination_gain",
    "rain_streaks",
    "shaken",
    "sweeping_shade",
]

MAX_JITTER: Final = 4
"""Largest :attr:`SceneSpec.camera_jitter`, pixels."""
MAX_PRECIPITATION: Final = 0.01
"""Bound (excluded) of :attr:`SceneSpec.precipitation`."""
RAIN_GAIN: Final = 30.0
"""Grey levels a rain streak adds to what it falls in front of (drops catch the light)."""
_RAIN_LENGTH_FRACTION: Final = 1 / 12
"""A streak's length, as a fraction of the frame's height (at least 2 pixels): a drop's
fall during one exposure."""

# Independent random streams, keyed by (seed, stream, frame); pipelines.synthetic uses 3 and 7.
_SHAKE_STREAM: Final = 11
_RAIN_STREAM: Final = 13

_Image = TypeVar("_Image", bound=np.generic)


def illumination_gain(spec: SceneSpec, frame: int) -> float:
    """Return the global brightness factor at a frame: ``1 + drift * sin(2 pi t / T)``."""
    if spec.illumination_drift == 0:
        return 1.0
    return 1.0 + spec.illumination_drift * math.sin(2 * math.pi * frame / spec.n_frames)


def sweeping_shade(spec: SceneSpec, frame: int) -> npt.NDArray[np.float32]:
    """Return the light of :attr:`SceneSpec.shade_sweep` at a frame, shape (x,).

    1 right of the edge, ``1 - shade_sweep`` left of it, with a linear ramp of a
    sixteenth of the width between; the edge moves at a constant speed from a quarter
    of the width beyond the left border (frame 0) to as far beyond the right one.
    """
    columns = np.arange(spec.width, dtype=np.float32)
    edge = spec.width * (-0.25 + 1.5 * frame / max(spec.n_frames - 1, 1))
    ramp = max(spec.width / 16, 1.0)
    inside = np.clip((edge - columns) / ramp + 0.5, 0.0, 1.0)  # 1 in the shade
    light: npt.NDArray[np.float32] = (1.0 - np.float32(spec.shade_sweep) * inside).astype(np.float32)
    return light


def camera_shift(spec: SceneSpec, frame: int) -> tuple[int, int]:
    """Return how far the view moved at a frame, ``(dy, dx)`` whole pixels.

    Each in ``-camera_jitter .. camera_jitter``, uniform and independent from frame to
    frame (the harshest shake: consecutive frames rarely agree); ``(0, 0)`` without
    jitter.
    """
    if spec.camera_jitter == 0:
        return (0, 0)
    rng = np.random.default_rng([spec.seed, _SHAKE_STREAM, frame])
    dy, dx = rng.integers(-spec.camera_jitter, spec.camera_jitter + 1, 2)
    return (int(dy), int(dx))


def shaken(image: npt.NDArray[_Image], shift: tuple[int, int]) -> npt.NDArray[_Image]:
    """Return ``image`` (y, x) with its content moved by ``shift = (dy, dx)`` pixels.

    ``out[y, x] = image[y - dy, x - dx]``, the rows and columns that come into view
    repeating the image's edge (the camera sees a little more of the same ground).
    A new array of ``image``'s dtype; ``image`` itself when the shift is (0, 0).
    """
    dy, dx = shift
    if dy == 0 and dx == 0:
        return image
    height, width = image.shape[:2]
    rows = np.clip(np.arange(height) - dy, 0, height - 1)
    columns = np.clip(np.arange(width) - dx, 0, width - 1)
    moved: npt.NDArray[_Image] = image[rows[:, None], columns[None, :]]
    return moved


def rain_streaks(spec: SceneSpec, frame: int) -> npt.NDArray[np.float32]:
    """Return the light rain adds to a frame, shape (y, x), float32 grey levels.

    ``round(precipitation * height * width)`` drops start at random pixels; each adds
    :data:`RAIN_GAIN` on one column over a twelfth of the height down from its start
    (at least 2 pixels; cut by the frame's bottom edge; overlapping streaks add once).
    All zeros without precipitation.  The truth leaves rain in the background, as CDnet's
    bad-weather videos do.
    """
    light = np.zeros((spec.height, spec.width), dtype=np.float32)
    drops = round(spec.precipitation * spec.height * spec.width)
    if drops == 0:
        return light
    rng = np.random.default_rng([spec.seed, _RAIN_STREAM, frame])
    starts_y = rng.integers(0, spec.height, drops)
    starts_x = rng.integers(0, spec.width, drops)
    length = max(2, round(spec.height * _RAIN_LENGTH_FRACTION))
    for step in range(length):
        rows = starts_y + step
        inside = rows < spec.height
        light[rows[inside], starts_x[inside]] = np.float32(RAIN_GAIN)
    return light
