"""Whether the camera moved: each sampled frame's shift against its background, and a warning.

Every model here compares each frame with a background fixed in the image: a camera
that tilts, pans or shakes puts the ground's edges at other pixels than the plate's,
and the masks mark them.  This module measures the whole-pixel translation that best
maps the background onto a frame, and decides whether the camera moved: the fitted
models register the frames with it (:mod:`pipelines.registration`), and a user is told
where frames are not registered.

The shift of one frame (:func:`frame_shift`):

- both images are reduced (Gaussian pyramid, halving) until the longer side is at most
  :data:`WORKING_SIDE` pixels; the shift is measured there and scaled back, so it is
  exact to the reduction factor (1 pixel up to 640 wide, 2 at 720p, 4 at 1080p, 8 at 4K);
- the cost of a shift is the mean over the background's strongest edges (the top
  :data:`EDGE_SHARE` of its gradient magnitude) of the absolute difference of the two
  gradient components, each capped at the 90th percentile of the background's gradient
  magnitude: moving objects, which cover a part of any frame, add at most the cap;
  gradients are blind to a change of brightness offset;
- the search is coarse to fine: every shift within :data:`MAX_SHIFT_SHARE` of the
  longer side on the coarsest level (longer side at most :data:`COARSE_SIDE`), then
  the 3 x 3 shifts around twice the last one on each finer level;
- a non-zero shift is *agreed* when it lowers the cost in at least
  :data:`AGREEMENT` of the tiles of a 4 x 4 grid that hold edges.  On a still camera
  the best shift of a frame is (0, 0), or, where the ground has little texture, a
  shift that wins by chance in about half of the tiles; a camera that moved wins in
  nearly all.

Measured on 24 frames of each video (spread over it, as the threshold samples them),
against the robust model's plate:

- 50 still videos (the seven still real cameras here, Video_003 re-encoded, 42 synthetic
  scenes with stops, crowds, drift, foliage, shadows, rain, faint ground): 60 of their
  1,200 frames gave a chance shift, with an agreement of at most 0.75; none agreed;
- 12 moving ones (the two real cameras that move, Video_003 shaken by 1 and 2 pixels, 8
  synthetic scenes shaken by 1-3 pixels): 253 of 288 frames gave a shift, 162 agreed;
  each video had 7-21 agreed frames of 24 (the car park's slow pan, 7).  On Video_003
  shaken by 2 pixels the shifts are the true ones.

Cost per frame (:class:`ShiftEstimator` prepares the background's side once): the
frame's pyramid and gradients, and about ``9 * levels + (2 r + 1)^2`` costs of
``EDGE_SHARE * p`` values, p the level's pixels, r the coarse search range; the same at
any resolution above the working one, beyond the reductions.  Memory: a few float32
copies of the frame and of the working image, and the background's pyramid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

__all__ = [
    "AGREEMENT",
    "COARSE_SIDE",
    "EDGE_SHARE",
    "MAX_SHIFT_SHARE",
    "MOVED_SHARE",
    "WORKING_SIDE",
    "CameraMotion",
    "FrameShift",
    "ShiftEstimator",
    "camera_motion",
    "frame_shift",
    "motion_of_shifts",
    "shifts_of_block",
]

WORKING_SIDE: Final = 640
"""Longest side, pixels, of the images a shift is measured on (a pyramid level)."""

COARSE_SIDE: Final = 96
"""Longest side, pixels, of the level searched exhaustively."""

MAX_SHIFT_SHARE: Final = 0.05
"""Largest shift searched, as a share of the longer side (at least 4 working pixels):
64 pixels at 1280 wide, more than the 720p clip's tilt of 23 pixels over its length."""

EDGE_SHARE: Final = 0.2
"""Share of the background's pixels, those of the strongest gradient, that decide a shift."""

AGREEMENT: Final = 0.8
"""Share of the edge tiles whose cost a non-zero shift must lower to count (see above)."""

MOVED_SHARE: Final = 0.25
"""Share of the sampled frames with an agreed shift above which the camera moved: no
still video had one, and the slowest real pan had 7 of 24."""

_GRID: Final = 4
"""Tiles per side of the agreement test."""

_MIN_TILE_EDGES: Final = 16
"""Edge pixels a tile needs to take part in the agreement test."""

_BORDER_SLACK: Final = 4
"""Pixels beyond a level's largest shift kept clear of edges: finer levels search around
twice the coarser one's shift, one or two of their pixels past its reach."""

_MIN_INTERIOR: Final = 8
"""Pixels per side left after the search margin: smaller images are not measured."""


@dataclass(frozen=True, kw_only=True)
class FrameShift:
    """How far a frame's content sits from its background.

    Attributes
    ----------
    dy, dx : int
        The frame shows the background moved by (dy, dx) pixels (down, right), at the
        frame's resolution: ``frame[y, x] ~ background[y - dy, x - dx]``.
    agreement : float
        Share of the edge tiles in which this shift lowers the cost, in [0, 1]; 1.0
        for (0, 0), 0.0 when the image has too few edges or is too small to measure.
    """

    dy: int
    dx: int
    agreement: float

    @property
    def agreed(self) -> bool:
        """A non-zero shift that lowered the cost in at least :data:`AGREEMENT` of the tiles."""
        return (self.dy, self.dx) != (0, 0) and self.agreement >= AGREEMENT


@dataclass(frozen=True, kw_only=True)
class CameraMotion:
    """What the sampled frames' shifts say about the camera.

    Attributes
    ----------
    sampled : int
        Frames measured.
    moved_frames : int
        Of them, frames with an agreed shift (:attr:`FrameShift.agreed`).
    largest_shift_px : float
        Longest agreed shift, pixels (0.0 without one).
    """

    sampled: int
    moved_frames: int
    largest_shift_px: float

    @property
    def moved(self) -> bool:
        """More than :data:`MOVED_SHARE` of the sampled frames sit away from the background."""
        return self.sampled > 0 and self.moved_frames > MOVED_SHARE * self.sampled

    def warning(self) -> str | None:
        """The one-line warning for a camera that moved, or None."""
        if not self.moved:
            return None
        return (
            f"the camera moves: {self.moved_frames} of {self.sampled} sampled frames sit up to"
            f" {self.largest_shift_px:.0f} pixels away from the background, so the masks mark the"
            " ground's edges where it moved (frames are not registered); stabilise the video first,"
            " e.g. with ffmpeg's vidstab filters in tripod mode (see the README)"
        )


def frame_shift(background: npt.ArrayLike, frame: npt.ArrayLike) -> FrameShift:
    """The whole-pixel translation of ``frame``'s content against ``background``.

    Parameters
    ----------
    background, frame : array_like
        (y, x) images of the same shape, any real dtype (grey levels).

    Returns
    -------
    FrameShift
        See the module's docstring for the method.  (0, 0) with agreement 0.0 when the
        images are too small to search or have no edges.  For many frames against one
        background, :class:`ShiftEstimator` prepares the background once.
    """
    return ShiftEstimator(background).shift(frame)


class ShiftEstimator:
    """:func:`frame_shift` against one background, its side prepared once.

    The background's pyramid, gradients and strongest edges are computed here; each
    :meth:`shift` then costs the frame's pyramid and gradients and the candidates'
    differences.  Each level's edges are taken away from a border as wide as the
    largest shift searched there (plus 4 pixels), so that every candidate's differences
    use the same edges.  Memory: the background's pyramid and its gradients (float32).
    """

    def __init__(self, background: npt.ArrayLike) -> None:
        reference = np.asarray(background, dtype=np.float32)
        if reference.ndim != 2:
            raise ValueError(f"frame_shift needs (y, x) images, got a background of shape {reference.shape}")
        self.shape = reference.shape
        self.working = _levels_above(max(reference.shape), WORKING_SIDE)
        self.coarse = self.working + _levels_above(max(reference.shape) / 2**self.working, COARSE_SIDE)
        references = _pyramid(reference, self.coarse)
        search = max(4, round(MAX_SHIFT_SHARE * max(references[self.working].shape)))
        # the largest shift searched on each level, in its pixels
        self.reach = {
            level: -(-search // 2 ** (level - self.working))
            for level in range(self.coarse, self.working - 1, -1)
        }
        self.levels = {
            level: _EdgeCosts(references[level], margin=reach + _BORDER_SLACK)
            for level, reach in self.reach.items()
        }

    def shift(self, frame: npt.ArrayLike) -> FrameShift:
        """The shift of ``frame`` (y, x), of the background's shape, against the background."""
        image = np.asarray(frame, dtype=np.float32)
        if image.shape != self.shape:
            raise ValueError(
                f"frame_shift needs two (y, x) images of one shape, got {self.shape} and {image.shape}"
            )
        if not all(costs.usable for costs in self.levels.values()):
            return FrameShift(dy=0, dx=0, agreement=0.0)
        factor = 2**self.working
        images = _pyramid(image, self.coarse)
        dy = dx = 0
        for level in range(self.coarse, self.working - 1, -1):
            costs = self.levels[level]
            gradients = _gradients(images[level])
            reach = self.reach[level] if level == self.coarse else 1
            centre = (0, 0) if level == self.coarse else (2 * dy, 2 * dx)
            candidates = [
                (centre[0] + ddy, centre[1] + ddx)
                for ddy in range(-reach, reach + 1)
                for ddx in range(-reach, reach + 1)
                if max(abs(centre[0] + ddy), abs(centre[1] + ddx)) < costs.margin
            ]
            means = costs.differences(gradients, candidates).mean(axis=1).tolist()
            # the cheapest; of equal costs, the shortest
            best = min(range(len(candidates)), key=lambda k: (means[k], sum(map(abs, candidates[k]))))
            dy, dx = candidates[best]
        if (dy, dx) == (0, 0):
            return FrameShift(dy=0, dx=0, agreement=1.0)
        return FrameShift(dy=dy * factor, dx=dx * factor, agreement=costs.agreement(gradients, dy, dx))


def shifts_of_block(
    frames: npt.NDArray[np.generic], backgrounds: npt.NDArray[np.generic]
) -> npt.NDArray[np.float32]:
    """:func:`frame_shift` of each frame of a block: (n, 3) float32 rows of dy, dx, agreement.

    ``frames`` and ``backgrounds`` (n, y, x), the background of each frame beside it.
    """
    rows = np.zeros((frames.shape[0], 3), dtype=np.float32)
    for index in range(frames.shape[0]):
        shift = frame_shift(backgrounds[index], frames[index])  # a background of its own each
        rows[index] = (shift.dy, shift.dx, shift.agreement)
    return rows


def camera_motion(shifts: npt.ArrayLike) -> CameraMotion:
    """Sum up rows of :func:`shifts_of_block` (n, 3): how many frames moved, and how far."""
    rows = np.asarray(shifts, dtype=np.float64).reshape(-1, 3)
    agreed = [
        FrameShift(dy=int(dy), dx=int(dx), agreement=float(agreement)).agreed for dy, dx, agreement in rows
    ]
    return motion_of_shifts(np.where(np.array(agreed, dtype=bool)[:, None], rows[:, :2], 0.0))


def motion_of_shifts(shifts: npt.ArrayLike) -> CameraMotion:
    """Sum up agreed shifts (n, 2), (0, 0) for a frame without one: how many moved, and how far."""
    table = np.asarray(shifts, dtype=np.float64).reshape(-1, 2)
    lengths = np.hypot(table[:, 0], table[:, 1])
    return CameraMotion(
        sampled=int(table.shape[0]),
        moved_frames=int(np.count_nonzero(lengths)),
        largest_shift_px=float(lengths.max()) if lengths.size else 0.0,
    )


def _levels_above(side: float, limit: int) -> int:
    """Halvings that bring ``side`` to at most ``limit``."""
    levels = 0
    while side / 2**levels > limit:
        levels += 1
    return levels


def _pyramid(image: npt.NDArray[np.float32], levels: int) -> list[npt.NDArray[np.float32]]:
    """``image`` and its ``levels`` Gaussian halvings (OpenCV's ``pyrDown``)."""
    pyramid = [image]
    for _ in range(levels):
        pyramid.append(np.asarray(cv2.pyrDown(pyramid[-1]), dtype=np.float32))
    return pyramid


class _EdgeCosts:
    """Costs of shifts of one pyramid level, over the background's strongest edges.

    The background's side is prepared once; each call takes the frame's gradients at
    this level (:func:`_gradients`).
    """

    def __init__(self, reference: npt.NDArray[np.float32], *, margin: int) -> None:
        height, width = reference.shape
        self.margin = margin
        self.width = width
        self.height = height
        self.usable = min(height, width) - 2 * margin >= _MIN_INTERIOR
        if not self.usable:
            return
        gradients = _gradients(reference)
        magnitude = np.hypot(*gradients)
        inner = (slice(margin, height - margin), slice(margin, width - margin))
        # one partition for both: the edges' bound and the cap of a difference
        bound, cap = np.percentile(magnitude[inner], [100 * (1 - EDGE_SHARE), 90])
        self.cap = float(cap)
        edges = np.zeros_like(magnitude, dtype=bool)
        edges[inner] = magnitude[inner] >= bound
        self.usable = self.cap > 0 and bool(edges.any())
        self.rows, self.columns = np.nonzero(edges)
        self.places = self.rows * width + self.columns  # flat indices of the edge pixels
        # the background's side of every difference is the same whatever the shift
        self.edge_values = [np.ravel(gradient)[self.places] for gradient in gradients]

    def differences(
        self,
        gradients: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
        shifts: list[tuple[int, int]],
    ) -> npt.NDArray[np.float32]:
        """Capped differences at each edge pixel p, frame at p against background at p - shift.

        (len(shifts), edges); each shift within the level's margin.
        """
        offsets = np.array([dy * self.width + dx for dy, dx in shifts], dtype=np.int64)
        moved = self.places[None, :] + offsets[:, None]
        total = np.zeros(moved.shape, dtype=np.float32)
        for gradient, edge_values in zip(gradients, self.edge_values, strict=True):
            difference = np.abs(np.ravel(gradient)[moved] - edge_values[None, :])
            total += np.minimum(difference, self.cap, out=difference)
        return total

    def agreement(
        self, gradients: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]], dy: int, dx: int
    ) -> float:
        """Share of the edge tiles in which (dy, dx) costs less than (0, 0), for the frame's ``gradients``."""
        moved, still = self.differences(gradients, [(dy, dx), (0, 0)])
        tiles = (self.rows * _GRID // self.height) * _GRID + self.columns * _GRID // self.width
        counts = np.bincount(tiles, minlength=_GRID * _GRID)
        lower = np.bincount(tiles, weights=moved - still, minlength=_GRID * _GRID)
        taking_part = counts >= _MIN_TILE_EDGES
        if not taking_part.any():
            return 0.0
        return float(np.mean(lower[taking_part] < 0))


def _gradients(image: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Central differences along x and y (zero on the border)."""
    along_x = np.zeros_like(image)
    along_y = np.zeros_like(image)
    along_x[:, 1:-1] = (image[:, 2:] - image[:, :-2]) * 0.5
    along_y[1:-1, :] = (image[2:, :] - image[:-2, :]) * 0.5
    return along_x, along_y
