"""Background and foreground from the factors U, s, Vt, lazily, chunk by chunk.

With the rank-k factors of M (pixel, frame), the background of frame ``t`` is column
``t`` of ``U_k diag(s_k) Vt_k`` and the foreground is the frame minus its background
(the masks that mark where it is large are :mod:`pipelines.masks`).  The lazy
functions take and return dask arrays and read no data; memory per task is one chunk
of frames (plus ``U_k``, which every task needs whole).  The ``*_block`` functions are
the same rules on one numpy block, for code that streams blocks itself (``apply``).

Shapes follow DESIGN.md: U (pixel, component), s (component,), Vt (component, frame);
frames (frame, y, x) uint8.  A color video's pixel axis holds ``y * x * 3`` values (see
:mod:`pipelines.matrix`); the functions accept it and return (frame, y, x, 3) arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Final

import cv2
import dask.array as da
import numpy as np
import numpy.typing as npt

from pipelines.shapes import image_shape, is_color, is_int
from storage.errors import InvalidParameterError

__all__ = [
    "TILE_BYTES",
    "apply_factors",
    "background_frames",
    "background_images",
    "background_tiles",
    "foreground_block",
    "foreground_frames",
    "low_rank_product",
    "project_out_block",
    "storage_foreground_block",
    "to_storage_foreground",
]

_INT16 = np.iinfo(np.int16)


def background_frames(
    U: npt.ArrayLike | da.Array,  # noqa: N803 - DESIGN.md's names
    s: npt.ArrayLike | da.Array,
    Vt: npt.ArrayLike | da.Array,  # noqa: N803
    *,
    rank: int,
    height: int,
    width: int,
    frame_chunks: Sequence[int] | None = None,
) -> da.Array:
    """Return the rank-k background of every frame, lazily.

    Parameters
    ----------
    U : array_like or dask.array.Array
        Shape (pixel, component), P = height * width (or height * width * 3 for color).
    s : array_like or dask.array.Array
        Shape (component,), singular values in decreasing order.
    Vt : array_like or dask.array.Array
        Shape (component, frame).
    rank : int
        Components k to use, 1 <= k <= the number of components.
    height, width : int
        Frame size.
    frame_chunks : sequence of int, optional
        Frames per output chunk, e.g. the stored video's ``frames.chunks[0]``; they
        must add up to the number of frames.  Default: Vt's frame chunks, which for
        stored factors hold thousands or millions of frames each (a Vt chunk is sized
        for Vt, not for the P x n background it makes): give the video's chunks to
        bound memory.

    Returns
    -------
    dask.array.Array
        Shape (frame, y, x) (or (frame, y, x, 3)), float32; frame ``t`` is
        ``(U_k diag(s_k) Vt_k[:, t]).reshape(y, x)``.  Its frame chunks are
        ``frame_chunks`` (or Vt's), each chunk one task; the (y, x) axes are whole.

    Raises
    ------
    InvalidParameterError
        Shapes that do not fit together or the frame size, or a rank out of range.

    Notes
    -----
    Memory per task: ``U_k`` (P x k float32, one chunk shared by every task) plus the
    output chunk, P x (frames per chunk) float32.
    """
    u, s_, vt = _factors(U, s, Vt)
    k = _check_rank(rank, u)
    frame_shape = image_shape(int(u.shape[0]), height, width)
    u_k = u[:, :k].rechunk({0: -1, 1: -1})
    s_k = s_[:k].rechunk(-1)
    vt_k = vt[:k].rechunk({0: -1})
    if frame_chunks is not None:
        sizes = tuple(int(n) for n in frame_chunks)
        if sum(sizes) != int(vt.shape[1]) or any(n < 1 for n in sizes):
            raise InvalidParameterError(
                f"frame_chunks {sizes} must be positive and add up to the factors'"
                f" {int(vt.shape[1])} frames; pass the video's frames.chunks[0]"
            )
        vt_k = vt_k.rechunk({1: sizes})
    out_index = "t" + "yxc"[: len(frame_shape)]
    return da.blockwise(
        _background_block,
        out_index,
        u_k,
        "pk",
        s_k,
        "k",
        vt_k,
        "kt",
        new_axes=dict(zip(out_index[1:], frame_shape, strict=True)),
        concatenate=True,
        dtype=np.float32,
        meta=np.empty((0,) * (1 + len(frame_shape)), dtype=np.float32),
        image_shape=frame_shape,
    )


def foreground_frames(frames: da.Array, background: da.Array) -> da.Array:
    """Return ``frames - background`` as float32, lazily.

    Parameters
    ----------
    frames : dask.array.Array
        Shape (frame, y, x[, 3]), uint8: the stored video.
    background : dask.array.Array
        Same shape, e.g. from :func:`background_frames`.

    Returns
    -------
    dask.array.Array
        Same shape, float32, in grey levels: positive where a frame is brighter than
        its background.  Chunks: those of ``frames`` (the background is rechunked to
        them), so the result can be written next to the video with aligned chunks.

    Raises
    ------
    InvalidParameterError
        ``frames`` is not uint8 or the shapes differ.
    """
    _check_frames(frames, "frames")
    if tuple(frames.shape) != tuple(background.shape):
        raise InvalidParameterError(
            f"frames {tuple(frames.shape)} and background {tuple(background.shape)} must have the"
            " same shape; build the background with the video's height and width"
        )
    aligned = da.asarray(background).astype(np.float32).rechunk(frames.chunks)
    return frames.astype(np.float32) - aligned


def storage_foreground_block(foreground: npt.NDArray[np.floating]) -> npt.NDArray[np.int16]:
    """:func:`to_storage_foreground` of one numpy block: rounded half to even, clipped, int16."""
    rounded = np.rint(foreground)
    np.clip(rounded, _INT16.min, _INT16.max, out=rounded)
    stored: npt.NDArray[np.int16] = rounded.astype(np.int16)
    return stored


def foreground_block(
    frames: npt.NDArray[np.uint8],
    u: npt.NDArray[np.float32],
    s: npt.NDArray[np.float32],
    vt: npt.NDArray[np.float32],
) -> npt.NDArray[np.int16]:
    """The int16 foreground of a block of frames, in memory: what separate would store.

    ``frames`` (n, y, x[, 3]) uint8; ``u`` (P, k), ``s`` (k,) and ``vt`` (k, n) the
    background's factors for these frames.  The same arithmetic as
    :func:`foreground_frames` then :func:`to_storage_foreground`, chunk by chunk, a
    tile of pixels at a time (:func:`background_tiles`): O(P k n) flops, no memory
    beyond the result and one tile.
    """
    n_frames = int(frames.shape[0])
    flat = np.ascontiguousarray(frames).reshape(n_frames, -1)
    stored = np.empty(flat.shape, dtype=np.int16)
    for pixels, background in background_tiles(u, s, vt):
        # uint8 - float32 in float32, rounded half to even and saturated to int16 in one
        # pass of OpenCV's kernel: the same values as rint then clip (tested), 2-3x faster.
        cv2.subtract(flat[:, pixels], background, dst=stored[:, pixels], dtype=cv2.CV_16S)
    return stored.reshape(frames.shape)


TILE_BYTES: Final = 1 << 20
"""Bytes of one float32 tile of :func:`background_tiles` (frames x pixels): about half
of a core's L2 cache.  On 36-frame chunks of 720p, tiles of 0.5 to 4 MiB took the same
time within 10 %; tiles of 32 MiB or more, as much as whole chunks."""


def background_tiles(
    u: npt.NDArray[np.float32], s: npt.NDArray[np.float32], vt: npt.NDArray[np.float32]
) -> Iterator[tuple[slice, npt.NDArray[np.float32]]]:
    """The background ``(U diag(s) Vt)^T`` of n frames, a tile of pixels at a time.

    ``u`` (P, k), ``s`` (k,), ``vt`` (k, n).  Yields ``(pixels, tile)``: a slice of
    the P pixels and their background in every frame, (n, len(pixels)) float32, about
    :data:`TILE_BYTES`.  The tile is one scratch array, reused (the caller may work in
    it, and must copy what it keeps), so a block's background never exists whole: a
    kernel that subtracts, compares or rounds works in cache, and touches no fresh
    memory per block.  O(P k n) flops in all.
    """
    weights = _frame_weights(s, vt)
    basis = np.ascontiguousarray(np.asarray(u, dtype=np.float32).T)  # (k, P): tiles of whole rows
    n_frames, n_pixels = weights.shape[0], basis.shape[1]
    tile_pixels = max(1024, TILE_BYTES // (4 * max(n_frames, 1)))
    scratch = np.empty((n_frames, min(tile_pixels, n_pixels)), dtype=np.float32)
    for start in range(0, n_pixels, tile_pixels):
        stop = min(start + tile_pixels, n_pixels)
        tile = scratch[:, : stop - start]
        low_rank_product(weights, basis[:, start:stop], out=tile)
        yield slice(start, stop), tile


def to_storage_foreground(foreground: da.Array) -> da.Array:
    """Round a float foreground to int16 for storage, lazily.

    Parameters
    ----------
    foreground : dask.array.Array
        Any shape, float, in grey levels.

    Returns
    -------
    dask.array.Array
        Same shape and chunks, int16: rounded to the nearest integer (half to even)
        and clipped to [-32768, 32767] (unreachable in practice: a uint8 frame minus
        a background stays within a few hundred grey levels).
    """
    return da.clip(da.rint(foreground), _INT16.min, _INT16.max).astype(np.int16)


def background_images(
    U: npt.ArrayLike | da.Array,  # noqa: N803 - DESIGN.md's names
    s: npt.ArrayLike | da.Array,
    Vt: npt.ArrayLike | da.Array,  # noqa: N803
    *,
    rank: int,
    height: int,
    width: int,
    segments: Sequence[tuple[int, int]],
) -> list[da.Array]:
    """Return one background image per segment of frames, lazily.

    The image of segment [a, b) is the mean of its rank-k background frames,
    computed without forming them::

        mean_t (U_k diag(s_k) Vt_k[:, t]) = U_k diag(s_k) mean(Vt_k[:, a:b], axis=1)

    so a video made of two concatenated scenes gives two images, each its scene's
    background.

    Parameters
    ----------
    U, s, Vt : array_like or dask.array.Array
        The factors, as for :func:`background_frames`.
    rank : int
        Components to use.
    height, width : int
        Frame size.
    segments : sequence of (int, int)
        Frame ranges [start, stop), 0 <= start < stop <= number of frames, e.g.
        :attr:`storage.video_array.StoredVideo.segments`.

    Returns
    -------
    list of dask.array.Array
        One per segment, shape (y, x) (or (y, x, 3)), float32 grey levels, not clipped
        (a low-rank image may stray a little outside 0-255).

    Notes
    -----
    Cost: one pass over ``U_k`` per segment and a mean over ``Vt_k``'s columns; the
    result is one image.
    """
    u, s_, vt = _factors(U, s, Vt)
    k = _check_rank(rank, u)
    frame_shape = image_shape(int(u.shape[0]), height, width)
    n_frames = int(vt.shape[1])
    images = []
    for segment in segments:
        if (
            len(segment) != 2
            or not all(is_int(v) for v in segment)
            or not 0 <= segment[0] < segment[1] <= n_frames
        ):
            raise InvalidParameterError(
                f"segment {segment!r} is not a frame range [start, stop) with"
                f" 0 <= start < stop <= {n_frames}; use the video's segments"
            )
        start, stop = int(segment[0]), int(segment[1])
        weights = s_[:k] * vt[:k, start:stop].mean(axis=1)
        column = da.dot(u[:, :k], weights).astype(np.float32)
        images.append(column.rechunk(-1).reshape(frame_shape))
    return images


def apply_factors(
    frames: da.Array,
    U: npt.ArrayLike | da.Array,  # noqa: N803 - DESIGN.md's name
    *,
    rank: int,
) -> da.Array:
    """Return the foreground of new footage against known factors, lazily.

    Each frame x (flattened) loses its projection on the first k columns of U::

        foreground = x - U_k (U_k^T x)

    No decomposition is run: the footage must come from the same camera, size and
    color mode as the video the factors came from.

    Parameters
    ----------
    frames : dask.array.Array
        Shape (frame, y, x[, 3]), uint8.
    U : array_like or dask.array.Array
        Shape (pixel, component) with orthonormal columns (as an SVD gives them),
        P = y * x (* 3).
    rank : int
        Components k to project out.

    Returns
    -------
    dask.array.Array
        Same shape as ``frames``, float32, one task per frame chunk (whole frames).

    Raises
    ------
    InvalidParameterError
        ``frames`` is not uint8, its frames do not have P pixels, or rank out of range.

    Notes
    -----
    Memory per task: ``U_k`` (P x k float32, shared) and one chunk of frames as
    float32, twice.
    """
    _check_frames(frames, "frames")
    u = da.asarray(U).astype(np.float32)
    if u.ndim != 2:
        raise InvalidParameterError(f"U must have shape (pixel, component), got {tuple(u.shape)}")
    k = _check_rank(rank, u)
    n_pixels = math.prod(int(n) for n in frames.shape[1:])
    if n_pixels != int(u.shape[0]):
        raise InvalidParameterError(
            f"frames of shape {tuple(frames.shape[1:])} have {n_pixels} values but U has"
            f" {int(u.shape[0])} pixels; resize the footage to the factors' video size"
        )
    whole = frames.rechunk({axis: -1 for axis in range(1, frames.ndim)})
    u_k = u[:, :k].rechunk({0: -1, 1: -1})
    index = "tyxc"[: frames.ndim]
    return da.blockwise(
        project_out_block,
        index,
        whole,
        index,
        u_k,
        "pk",
        concatenate=True,
        dtype=np.float32,
        meta=np.empty((0,) * frames.ndim, dtype=np.float32),
    )


# --- block functions (run in the workers, on numpy arrays) ---------------------------


def _background_block(
    u: npt.NDArray[np.float32],
    s: npt.NDArray[np.float32],
    vt: npt.NDArray[np.float32],
    *,
    image_shape: tuple[int, ...],
) -> npt.NDArray[np.float32]:
    """(P, k), (k,), (k, n) -> (n, *image_shape): the chunk's background frames.

    Computed frame-major, ``(Vt^T diag(s)) U^T``, so the (n, P) result is made in its
    final layout (no transposed copy of it).
    """
    frames = low_rank_product(_frame_weights(s, vt), np.asarray(u, dtype=np.float32).T)  # (n, P)
    return frames.reshape((vt.shape[1], *image_shape))


def _frame_weights(s: npt.NDArray[np.float32], vt: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """(k,), (k, n) -> (n, k) float32 C-ordered: each frame's weights ``diag(s) Vt[:, t]``."""
    return np.ascontiguousarray((vt * s[:, np.newaxis]).T, dtype=np.float32)


def low_rank_product(
    weights: npt.NDArray[np.float32],
    basis: npt.NDArray[np.float32],
    *,
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """(n, k) times (k, P) -> (n, P) float32, into ``out`` when given.

    With k = 1 this is an outer product, computed as one: numpy's matmul runs a
    generic loop for an inner dimension of 1, 20 times slower (measured on tiles of
    36 x 7,281).  Otherwise BLAS.  O(n k P) flops, no memory beyond the result.
    """
    if out is None:
        out = np.empty((weights.shape[0], basis.shape[1]), dtype=np.float32)
    if weights.shape[1] == 1:
        np.multiply(weights, basis, out=out)
    else:
        np.matmul(weights, basis, out=out)
    return out


def project_out_block(block: npt.NDArray[np.uint8], u: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """(n, y, x[, 3]) uint8, (P, k) -> the same shape, float32: x - U (U^T x)."""
    x = block.reshape(block.shape[0], -1).astype(np.float32)  # (n, P)
    x -= (x @ u) @ u.T
    return x.reshape(block.shape)


# --- checks ----------------------------------------------------------------------------


def _factors(
    U: npt.ArrayLike | da.Array,  # noqa: N803
    s: npt.ArrayLike | da.Array,
    Vt: npt.ArrayLike | da.Array,  # noqa: N803
) -> tuple[da.Array, da.Array, da.Array]:
    u, s_, vt = (da.asarray(a).astype(np.float32) for a in (U, s, Vt))
    if u.ndim != 2 or s_.ndim != 1 or vt.ndim != 2:
        raise InvalidParameterError(
            f"factors must be U (pixel, component), s (component,), Vt (component, frame);"
            f" got shapes {tuple(u.shape)}, {tuple(s_.shape)}, {tuple(vt.shape)}"
        )
    n = int(s_.shape[0])
    if int(u.shape[1]) != n or int(vt.shape[0]) != n:
        raise InvalidParameterError(
            f"U {tuple(u.shape)}, s {tuple(s_.shape)} and Vt {tuple(vt.shape)} do not agree on"
            " the number of components; load the three factors of one decomposition"
        )
    return u, s_, vt


def _check_rank(rank: int, u: da.Array) -> int:
    available = int(u.shape[1])
    if not is_int(rank) or not 1 <= rank <= available:
        raise InvalidParameterError(
            f"rank must be an integer in 1..{available} (the factors' components), got {rank!r}"
        )
    return int(rank)


def _check_frames(frames: da.Array, name: str) -> None:
    if not isinstance(frames, da.Array):
        raise InvalidParameterError(
            f"{name} must be a dask array (frame, y, x[, 3]), got {type(frames).__name__};"
            " use open_video(store).frames or dask.array.from_array"
        )
    if frames.ndim != 3 and not is_color(frames):
        raise InvalidParameterError(
            f"{name} must have shape (frame, y, x) or (frame, y, x, 3), got {tuple(frames.shape)}"
        )
    if frames.dtype != np.uint8:
        raise InvalidParameterError(f"{name} must be uint8 video frames, got {frames.dtype}")
