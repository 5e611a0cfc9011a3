"""New footage registered to a stored background as it streams, block by block.

``apply`` separates footage the fit never saw against a stored plate.  A camera that
shakes, or that was knocked since, shows the plate's ground at other pixels, and the
masks would mark its edges.  :class:`FootageRegistration` decides from a few frames of
each block whether the footage sits away from the plate and, from the first block where
it does, gives every frame's shift (:func:`pipelines.camera_motion.ShiftEstimator`), by
which the step moves each frame back before comparing it with the plate and moves its
mask forward again (:mod:`pipelines.registration`), as the fit does.

The rule: the first block probes ``first_probes`` frames spread over it (the frames the
threshold samples), each later block ``later_probes``; registration starts at the first
block where at least :data:`pipelines.registration.MOVED_FRAMES_TO_REGISTER` probes
have an agreed shift, and then every frame of that block and of every later one is
measured; a frame keeps (0, 0) unless its own shift is agreed.  The plate is sharp here
(a fitted plate, registered or still), against which still footage agrees less often
than against the fit's blurred first plate, the bar's measure; a camera that moves
agrees in most frames.  Once started, registration does not stop: a shaking camera has
still spells.

Cost: a shift per probe (:data:`LATER_PROBES` of each block while the camera sits
still), a shift per frame once registering, the plate's side once.  Memory: the
estimator's pyramid of the plate.  Pure: numpy and OpenCV, no dask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from pipelines.camera_motion import FrameShift, ShiftEstimator, motion_of_shifts
from pipelines.masks import sample_frames
from pipelines.registration import MOVED_FRAMES_TO_REGISTER

__all__ = ["LATER_PROBES", "FootageRegistration", "RegistrationStart"]

LATER_PROBES: Final = 4
"""Frames probed in each block after the first while the footage sits on the plate: a
camera knocked mid-footage moves every later frame, so two of four agree at once."""


@dataclass(frozen=True, kw_only=True)
class RegistrationStart:
    """Where registration started.

    Attributes
    ----------
    frame : int
        First frame of the block where the probes agreed (0-based, in the footage).
    agreed : int
        Probes of that block with an agreed shift.
    probed : int
        Probes of that block.
    """

    frame: int
    agreed: int
    probed: int


class FootageRegistration:
    """Each block's shifts against one plate, probing until the footage moves.

    Parameters
    ----------
    plate : array_like
        (y, x) background in grey levels, the frames' shape.
    first_probes : int
        Frames probed in the first block.
    later_probes : int
        Frames probed in each later block while not registering.
    """

    def __init__(self, plate: npt.ArrayLike, *, first_probes: int, later_probes: int = LATER_PROBES) -> None:
        if first_probes < 1 or later_probes < 1:
            raise ValueError(f"probes must be positive, got {first_probes} and {later_probes}")
        self._estimator = ShiftEstimator(plate)
        self._probes = (first_probes, later_probes)
        self.frames_seen = 0
        """Frames of the footage given shifts so far."""
        self.started: RegistrationStart | None = None
        """Where registration started, or None while the footage sits on the plate."""
        self.registered_frames = 0
        """Frames given a non-zero shift so far."""
        self.largest_shift_px = 0.0
        """Longest shift given so far, pixels."""

    def shifts(self, frames: npt.NDArray[np.generic]) -> npt.NDArray[np.int64]:
        """The next block's shifts: ``frames`` (n, y, x) -> (n, 2) int64, (dy, dx) per frame.

        All zeros while not registering.  Blocks must come in the footage's order.
        """
        count = int(frames.shape[0])
        rows = np.zeros((count, 2), dtype=np.int64)
        first = self.frames_seen
        self.frames_seen += count
        measured: dict[int, FrameShift] = {}
        if self.started is None:
            probed = sample_frames(count, self._probes[0] if first == 0 else self._probes[1])
            measured = {int(index): self._estimator.shift(frames[index]) for index in probed}
            agreed = sum(shift.agreed for shift in measured.values())
            if agreed < MOVED_FRAMES_TO_REGISTER:
                return rows
            self.started = RegistrationStart(frame=first, agreed=agreed, probed=len(measured))
        for index in range(count):
            shift = measured[index] if index in measured else self._estimator.shift(frames[index])
            if shift.agreed:
                rows[index] = (shift.dy, shift.dx)
        motion = motion_of_shifts(rows)
        self.registered_frames += motion.moved_frames
        self.largest_shift_px = max(self.largest_shift_px, motion.largest_shift_px)
        return rows
