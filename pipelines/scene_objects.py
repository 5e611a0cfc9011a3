"""The moving objects of synthetic scenes: their shapes, paths, stops and cast shadows.

Crossers (objects 0, 2, 4, ...) are wide and fast like vehicles: they drive across the
frame, leave it, stay away a while and come back from the other side.  Walkers
(objects 1, 3, 5, ...) are tall and slower like people: they bounce around inside the
frame, and may stand still for a while, or stop one after another at one place.  Each
object is a rectangle or an ellipse with its own texture
(:func:`pipelines.scene_textures.object_texture`).  With a sun, each
casts a shadow: its own shape, shifted by a fixed fraction of its size
(:data:`SHADOW_OFFSET`), that darkens whatever background it falls on
(:func:`shadow_cover`).  Pure functions of a seed; see :mod:`pipelines.synthetic` for
the scenes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from pipelines.scene_textures import ellipse, object_texture, toward_grey

__all__ = ["SHADOW_OFFSET", "MovingObject", "bounce", "make_objects", "shadow_cover"]

SHADOW_OFFSET: Final = (0.35, 0.3)
"""Where an object's shadow falls: (down, right), as fractions of its (height, width)."""

_OBJECT_STREAM: Final = 2
"""The objects' random stream, keyed by (seed, stream)."""
_PAUSE_STREAM: Final = 4
"""The walkers' stops' random streams, keyed by (seed, stream, object)."""
_CAMOUFLAGE_STREAM: Final = 8
"""Where each object's camouflaged patch lies, keyed by (seed, stream, object)."""
_CAMOUFLAGE_MARGIN: Final = 1
"""Pixels of the object kept between its camouflaged patch and its edge, where it fits."""


class ObjectScene(Protocol):
    """What the objects need of a scene: its size, length, seed, stops and contrast."""

    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def n_frames(self) -> int: ...
    @property
    def n_objects(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def pause_fraction(self) -> float: ...
    @property
    def stop_in_turn(self) -> bool: ...
    @property
    def object_contrast(self) -> float: ...
    @property
    def camouflage(self) -> float: ...


@dataclass(frozen=True, kw_only=True, eq=False)
class MovingObject:
    """One object: its texture and shape, where it starts and how it moves."""

    texture: npt.NDArray[np.uint8]  # (h, w)
    shape: npt.NDArray[np.bool_]  # (h, w), True on the object's pixels
    see_through: npt.NDArray[np.bool_]  # (h, w), True where the ground behind shows (camouflage)
    crosses: bool  # True: leaves the frame and comes back; False: bounces inside
    y0: float
    x0: float
    vy: float  # pixels per frame
    vx: float
    gap: float  # crossers: distance travelled off-screen before re-entering
    pause_start: int = 0  # first frame it stands still
    pause_length: int = 0  # frames it stands still

    def top_left(self, t: int, *, height: int, width: int) -> tuple[int, int]:
        """Return the integer (y, x) of the object's top-left pixel at frame ``t``."""
        if t >= self.pause_start:  # the clock stops while it stands still
            t = max(self.pause_start, t - self.pause_length)
        h, w = self.shape.shape
        y = bounce(self.y0 + self.vy * t, height - h)
        if self.crosses:
            period = width + w + self.gap
            x = (self.x0 + self.vx * t) % period - (w + self.gap)
        else:
            x = bounce(self.x0 + self.vx * t, width - w)
        return math.floor(y + 0.5), math.floor(x + 0.5)


def bounce(position: float, extent: int) -> float:
    """Fold an unbounded coordinate into [0, extent], reflecting at both ends."""
    if extent <= 0:
        return 0.0
    folded = position % (2 * extent)
    return folded if folded <= extent else 2 * extent - folded


def _pause(spec: ObjectScene, index: int) -> tuple[int, int]:
    """(first frame, length) of object ``index``'s stop: walkers only, none without pauses.

    In turn, walker ``i`` of ``m`` starts its stop at ``gap / 2 + i (length + gap)``, the
    clip's frames without a stop spread evenly as ``m`` gaps between the stops.
    """
    length = round(spec.pause_fraction * spec.n_frames)
    if length == 0 or index % 2 == 0:
        return 0, 0
    if spec.stop_in_turn:
        n_walkers = spec.n_objects // 2
        gap = (spec.n_frames - n_walkers * length) / n_walkers
        return math.floor(gap / 2 + (index // 2) * (length + gap)), length
    rng = np.random.default_rng([spec.seed, _PAUSE_STREAM, index])
    return int(rng.integers(0, spec.n_frames - length + 1)), length


def _stop_place(spec: ObjectScene, h: int, w: int) -> tuple[int, int]:
    """Top-left (y, x) of an ``h x w`` walker at the shared stop: centred, its feet at 3/4 height."""
    y = min(max(round(0.75 * spec.height) - h, 0), spec.height - h)
    x = min(max((spec.width - w) // 2, 0), spec.width - w)
    return y, x


def _camouflaged_patch(spec: ObjectScene, index: int, shape: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The part of object ``index`` that looks like the ground behind it: (h, w) bool.

    An ellipse ``spec.camouflage`` of the object's height and width, at a random place
    inside it (a margin of :data:`_CAMOUFLAGE_MARGIN` pixels where it fits), cut to
    the object's shape: a windscreen or a grey roof on a grey road, a coat the colour
    of the floor.  Empty without camouflage.
    """
    h, w = shape.shape
    patch = np.zeros((h, w), dtype=bool)
    ph, pw = round(spec.camouflage * h), round(spec.camouflage * w)
    if ph < 1 or pw < 1:
        return patch
    rng = np.random.default_rng([spec.seed, _CAMOUFLAGE_STREAM, index])
    top, left = (_patch_start(rng, room=size - part) for size, part in ((h, ph), (w, pw)))
    patch[top : top + ph, left : left + pw] = ellipse(ph, pw)
    return patch & shape


def _patch_start(rng: np.random.Generator, *, room: int) -> int:
    """Where a patch starts in ``room`` spare pixels: :data:`_CAMOUFLAGE_MARGIN` from each end if it fits."""
    first = min(_CAMOUFLAGE_MARGIN, room)
    return int(rng.integers(first, max(room - _CAMOUFLAGE_MARGIN, first) + 1))


def make_objects(spec: ObjectScene) -> list[MovingObject]:
    """The scene's ``spec.n_objects`` objects: crossers at even indices, walkers at odd ones.

    Sizes, speeds, starts, shapes and textures are drawn from the scene's seed; dark
    and bright alternate (dark, bright, bright, dark, ...); each walker stands still
    for ``spec.pause_fraction`` of the clip from a random frame on.
    """
    rng = np.random.default_rng([spec.seed, _OBJECT_STREAM])
    height, width = spec.height, spec.width
    side = min(height, width)
    objects = []
    for index in range(spec.n_objects):
        crosses = index % 2 == 0
        if crosses:  # vehicles: wide, fast, across the frame
            h = round(rng.uniform(0.12, 0.25) * height)
            w = round(rng.uniform(0.18, 0.35) * width)
            speed_x = max(1.0, rng.uniform(0.015, 0.05) * width)
            vx = speed_x * rng.choice([-1.0, 1.0])
            vy = rng.uniform(-0.1, 0.1) * speed_x
            gap = rng.uniform(0.0, 0.5) * width
        else:  # people: tall, slower, wandering inside the frame
            h = round(rng.uniform(0.2, 0.4) * height)
            w = round(rng.uniform(0.07, 0.15) * width)
            speed = max(1.0, rng.uniform(0.01, 0.03) * side)
            direction = rng.uniform(0, 2 * np.pi)
            vy, vx = speed * np.sin(direction), speed * np.cos(direction)
            gap = 0.0
        h, w = max(3, h), max(3, w)
        y0 = rng.uniform(0, height - h)
        x0 = rng.uniform(0, width + w + gap) if crosses else rng.uniform(0, width - w)
        rounded = bool(rng.random() < 0.5)
        pause_start, pause_length = _pause(spec, index)
        if pause_length and spec.stop_in_turn:  # the path passes the shared place at its stop
            place_y, place_x = _stop_place(spec, h, w)
            y0, x0 = place_y - vy * pause_start, place_x - vx * pause_start
        bright = index % 4 in (1, 2)  # dark, bright, bright, dark, ...
        shape = ellipse(h, w) if rounded else np.ones((h, w), dtype=bool)
        objects.append(
            MovingObject(
                texture=toward_grey(object_texture(rng, h, w, bright=bright), spec.object_contrast),
                shape=shape,
                see_through=_camouflaged_patch(spec, index, shape),
                crosses=crosses,
                y0=float(y0),
                x0=float(x0),
                vy=float(vy),
                vx=float(vx),
                gap=float(gap),
                pause_start=pause_start,
                pause_length=pause_length,
            )
        )
    return objects


def shadow_cover(objects: list[MovingObject], t: int, *, height: int, width: int) -> npt.NDArray[np.float32]:
    """How much each pixel of frame ``t`` lies in a shadow: (height, width) float32 in [0, 1].

    Each object's shape, shifted by :data:`SHADOW_OFFSET` of its size, marks its
    shadow; the union is softened by a 3 x 3 box filter (a penumbra one pixel wide on
    each side of the edge).  A pixel's light is then ``1 - strength * cover``.
    """
    cover = np.zeros((height, width), dtype=np.float32)
    for obj in objects:
        y, x = obj.top_left(t, height=height, width=width)
        h, w = obj.shape.shape
        y += round(SHADOW_OFFSET[0] * h)
        x += round(SHADOW_OFFSET[1] * w)
        ys, ye = max(y, 0), min(y + h, height)
        xs, xe = max(x, 0), min(x + w, width)
        if ys < ye and xs < xe:
            cover[ys:ye, xs:xe][obj.shape[ys - y : ye - y, xs - x : xe - x]] = 1.0
    softened = cv2.blur(cover, (3, 3), borderType=cv2.BORDER_REPLICATE)
    return np.asarray(softened, dtype=np.float32)
