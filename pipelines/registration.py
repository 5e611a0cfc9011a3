"""Frames registered to the background plate: whole-pixel shifts, their estimate, and the way back.

A camera that tilts, pans or shakes shows the ground at other pixels in each frame.
Where :mod:`pipelines.camera_motion` finds that it moved, the background models fit
their plate on the frames *moved back* by each frame's shift (the plate is then
sharp, in the coordinates of the view's middle), compare each moved-back frame with
it, and move each frame's mask *forward* again, so that masks stay in the camera's
coordinates, where a user (and a truth) looks at them.

Conventions: a shift (dy, dx) says that the frame shows the plate moved by dy rows
down and dx columns right: ``frame[y, x] ~ plate[y - dy, x - dx]``.

- :func:`moved_back` gives ``frame[y + dy, x + dx]`` at (y, x), the frame's edge
  repeated where that falls outside it (ground the frame did not see: the plate's own
  there, near enough, as masks are not kept there);
- :func:`moved_forward` gives ``mask[y - dy, x - dx]`` at (y, x), and 0 where that
  falls outside, or, for masks (:data:`BAND_RULE`), the mask's nearest edge value
  there: the band of the view the plate's coordinates do not cover (as wide as the
  shift) is then marked where an object crosses the mask's edge beside it, rather than
  never.

The fit estimates the shifts in rounds (:func:`shifts_against`, called by
:mod:`pipelines.steps.background`): the frames of its sample plate against the plate of
the raw frames (blurred by the motion), and again against the plate of those frames
moved back by the last round's shifts, until they settle; then every frame against the
last plate, in the fit's first pass (:func:`registered` takes the shifts lazily).
Measured on Video_003 shaken by up to 2 pixels, every frame against the first two
plates: the first finds the true shift of 46 % of its 794 frames, the second of all of
them (README).  A frame keeps (0, 0) where its shift is not agreed
(:attr:`pipelines.camera_motion.FrameShift.agreed`).

A video of several plates' windows is registered window by window, each in its own
plate's coordinates (a camera that drifts over hours would leave ever more of the view
outside a first window's plate).  Neighbouring plates blend
(:func:`pipelines.background_models.window_factors`) only where they sit in one place:
:func:`blend_stretches` cuts the blend between two whose shift is agreed.

Cost: :meth:`pipelines.camera_motion.ShiftEstimator.shift` per frame measured, the
plate's side once per task; moving a frame is a copy of its pixels (OpenCV's border
replication).  Memory: a chunk and its moved copy per task.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from itertools import pairwise
from typing import Any, Final, Literal

import cv2
import dask.array as da
import numpy as np
import numpy.typing as npt

from pipelines.camera_motion import ShiftEstimator, frame_shift

__all__ = [
    "BAND_RULE",
    "MOVED_FRAMES_TO_REGISTER",
    "blend_stretches",
    "moved_back",
    "moved_forward",
    "registered",
    "shifts_against",
    "unregistered",
]

MOVED_FRAMES_TO_REGISTER: Final = 2
"""Sampled frames (of 24) with an agreed shift against a window's first plate from which
the fit registers the window.  Lower than the warning's bar
(:data:`pipelines.camera_motion.MOVED_SHARE`, more than 6): that plate is blurred by the
motion, so fewer frames agree against it, and registering a still camera only costs a
read, each frame keeping (0, 0) unless its own shift is agreed.  Against the first plate,
49 of 50 still videos had 0 such frames and one had 1; 12 moving ones had 4-20."""


BAND_RULE: Final = "registered frames' masks carried by their edge into the band their plate does not cover"
"""What a separation records of the border band of registered frames (part of its clean-up
record, so that masks stored by the rule before, which left the band empty, are made
again).  Measured (README): synthetic shakes of 1-3 pixels F 0.9968 -> 0.9978, 0.9949 ->
0.9969, 0.9945 -> 0.9976; Video_003 shaken by 1 and 2 pixels unchanged."""


def moved_back(block: npt.NDArray[Any], shifts: npt.NDArray[np.integer]) -> npt.NDArray[Any]:
    """Each frame of ``block`` (n, y, x) moved back by its shift (n, 2): ``frame[y + dy, x + dx]``.

    The frame's edge is repeated where that falls outside it.  Same dtype and shape.
    """
    out = np.empty_like(block)
    height, width = block.shape[1:3]
    table = np.asarray(shifts, dtype=np.int64).reshape(-1, 2)
    # a shift beyond the frame keeps its last row or column in view
    bounded = np.clip(table, [1 - height, 1 - width], [height - 1, width - 1])
    for index, (dy, dx) in enumerate(bounded.tolist()):
        seen = block[index, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)]
        # the part of the frame that stays in view, its edge repeated outward (OpenCV: a copy's cost)
        cv2.copyMakeBorder(
            np.ascontiguousarray(seen), max(-dy, 0), max(dy, 0), max(-dx, 0), max(dx, 0),
            cv2.BORDER_REPLICATE, dst=out[index],
        )  # fmt: skip
    return out


def moved_forward(
    block: npt.NDArray[Any], shifts: npt.NDArray[np.integer], *, border: Literal["zero", "repeat"] = "zero"
) -> npt.NDArray[Any]:
    """Each frame of ``block`` (n, y, x) moved forward by its shift (n, 2): ``frame[y - dy, x - dx]``.

    Where that falls outside the frame: zero, or with ``border="repeat"`` the frame's
    nearest edge value (:func:`moved_back` by the opposite shifts).  Same dtype and shape.
    """
    if border == "repeat":
        opposite = -np.asarray(shifts, dtype=np.int64).reshape(-1, 2)
        if block.dtype == np.bool_:  # OpenCV copies bytes, not booleans
            return moved_back(block.view(np.uint8), opposite).view(np.bool_)
        return moved_back(block, opposite)
    out = np.zeros_like(block)
    height, width = block.shape[1:3]
    for index, (dy, dx) in enumerate(np.asarray(shifts, dtype=np.int64).reshape(-1, 2)):
        rows = slice(max(dy, 0), height + min(dy, 0))
        columns = slice(max(dx, 0), width + min(dx, 0))
        source_rows = slice(max(-dy, 0), height + min(-dy, 0))
        source_columns = slice(max(-dx, 0), width + min(-dx, 0))
        out[index, rows, columns] = block[index, source_rows, source_columns]
    return out


def registered(frames: da.Array, shifts: npt.NDArray[np.integer] | da.Array) -> da.Array:
    """``frames`` (T, y, x), whole frames per chunk, each moved back by its row of ``shifts`` (T, 2); lazy.

    ``shifts`` may itself be lazy (:func:`shifts_against` of the same frames): each task
    then measures its frames and moves them back in one read.
    """
    return _per_frame(moved_back, frames, shifts)


def unregistered(
    frames: da.Array, shifts: npt.NDArray[np.integer], *, border: Literal["zero", "repeat"] = "zero"
) -> da.Array:
    """``frames`` (T, y, x) in the plate's coordinates, each moved forward by its shift; lazy.

    ``border`` as :func:`moved_forward`'s.
    """
    return _per_frame(partial(moved_forward, border=border), frames, shifts)


def shifts_against(frames: da.Array, plate: npt.ArrayLike) -> da.Array:
    """Each frame's agreed shift against ``plate``: (T, 2) int32, (0, 0) where none; lazy.

    One task per chunk of ``frames`` (T, y, x); ``plate``, (y, x) or flattened, travels
    in the graph.
    """
    reference = np.asarray(plate, dtype=np.float32).reshape(frames.shape[1:])
    if any(len(chunks) != 1 for chunks in frames.chunks[1:]):
        frames = frames.rechunk({1: -1, 2: -1})
    return da.map_blocks(
        _agreed_shifts,
        frames,
        reference,
        drop_axis=2,
        chunks=(frames.chunks[0], (2,)),
        dtype=np.int32,
        meta=np.empty((0, 0), np.int32),
    )


def blend_stretches(
    plates: Sequence[npt.ArrayLike],
    windows: Sequence[tuple[int, int]],
    *,
    sources: Sequence[tuple[int, int]],
    shape: tuple[int, int],
) -> list[tuple[int, int]]:
    """The stretches of frames within which neighbouring plates may blend.

    ``plates[i]`` (P,) or ``shape`` is window i's plate, ``windows`` and ``sources``
    (start, stop) frame ranges, each window inside one source.  Each source is cut at the
    start of every window whose plate sits apart from the plate before it (an agreed
    :func:`~pipelines.camera_motion.frame_shift`: the camera moved between them), so that
    no frame's background mixes two views.  Cost: one shift per pair of neighbouring
    windows of a source.
    """
    cuts: set[int] = set()
    for index in range(1, len(windows)):
        start = windows[index][0]
        if any(first < start < stop for first, stop in sources):  # a neighbour in its source
            before = np.asarray(plates[index - 1]).reshape(shape)
            if frame_shift(before, np.asarray(plates[index]).reshape(shape)).agreed:
                cuts.add(start)
    stretches: list[tuple[int, int]] = []
    for first, stop in sources:
        edges = [first, *sorted(cut for cut in cuts if first < cut < stop), stop]
        stretches.extend(pairwise(edges))
    return stretches


def _agreed_shifts(block: npt.NDArray[Any], plate: npt.NDArray[np.float32]) -> npt.NDArray[np.int32]:
    """The agreed shift of each frame of ``block`` (n, y, x) against ``plate``: (n, 2) int32."""
    out = np.zeros((block.shape[0], 2), dtype=np.int32)
    estimator = ShiftEstimator(plate)  # the plate's side once per chunk
    for index in range(block.shape[0]):
        shift = estimator.shift(block[index])
        if shift.agreed:
            out[index] = (shift.dy, shift.dx)
    return out


def _per_frame(kernel: Any, frames: da.Array, shifts: npt.NDArray[np.integer] | da.Array) -> da.Array:
    """``kernel(block, its rows of shifts)`` over each chunk of ``frames``; the shifts name the graph."""
    table = shifts if isinstance(shifts, da.Array) else np.asarray(shifts, dtype=np.int64).reshape(-1, 2)
    if table.shape != (frames.shape[0], 2):
        raise ValueError(f"{table.shape[0]} shifts for {frames.shape[0]} frames")
    if any(len(chunks) != 1 for chunks in frames.chunks[1:]):
        frames = frames.rechunk({1: -1, 2: -1})
    # each task receives its frames' rows of the table, chunked as the frames are
    if isinstance(table, da.Array):
        rows = table.astype(np.int64).rechunk((frames.chunks[0], 2))
    else:
        rows = da.from_array(table, chunks=(frames.chunks[0], 2))
    return da.blockwise(
        kernel, "tyx", frames, "tyx", rows, "tc",
        concatenate=True, dtype=frames.dtype, meta=np.empty((0, 0, 0), frames.dtype),
    )  # fmt: skip
