"""Masks straight from the stored frames and the background's factors, a tile at a time.

:func:`pipelines.masks.masks` of :func:`pipelines.separate.foreground_frames` makes the
same masks, but through whole float32 chunks: the background of a chunk, the frames as
float32, their difference, its magnitude, each an (n, P) array that streams through
memory.  Here each task works through its chunk in pixel tiles that stay in cache: the
tile's background (an (n, k) by (k, tile) product), the difference from the uint8
frames, its magnitude and the comparison with the threshold, into one boolean (n, P)
array; then the clean-up of :func:`pipelines.masks.mask_block`.  The rule is the same,
and so are the masks (the float32 arithmetic is the same, element by element, but for
the order of the k terms of the background, which BLAS may sum differently in a tile).
"""

from __future__ import annotations

from typing import Final

import dask.array as da
import numpy as np
import numpy.typing as npt

from pipelines.mask_cleanup import clean_masks
from pipelines.masks import MASK_VALUE, checked_threshold
from pipelines.separate import background_tiles
from pipelines.shadows import clean_without_shadows, drop_shadows, rounded_background, shadow_candidates
from storage.errors import InvalidParameterError

__all__ = ["factor_mask_block", "masks_from_factors"]

_FRAME_NDIM: Final = 3


def masks_from_factors(
    frames: da.Array,
    u: da.Array,
    s: da.Array,
    vt: da.Array,
    *,
    threshold: float | npt.NDArray[np.float32],
    cleanup: bool = True,
    shadow_ratio: float | None = None,
) -> da.Array:
    """The masks of ``frames`` against the background ``u diag(s) vt``, lazily.

    Parameters
    ----------
    frames : dask.array.Array
        Shape (frame, y, x), uint8: the stored gray video.  Chunks of whole frames
        (they are rechunked to whole frames otherwise).
    u, s, vt : dask.array.Array
        The background's factors: (P, k), (k,) and (k, frame), P = y * x.
    threshold : float or numpy.ndarray
        Grey levels, > 0, or a (y, x) map of them (see :func:`pipelines.masks.masks`).
    cleanup : bool
        The 3 x 3 majority vote and the holes filled, per frame, as
        :func:`pipelines.masks.masks` does.
    shadow_ratio : float, optional
        The scene's shadow ratio (:func:`pipelines.shadows.shadow_ratio_of`): each
        frame's shadows leave its mask.  With ``cleanup``, as
        :func:`pipelines.shadows.clean_without_shadows` takes them out (their cores and
        soft edges, and a clean-up that fills back only places inside objects);
        without it, their cores alone (:func:`pipelines.shadows.drop_shadows`).  None
        (default): shadows stay.

    Returns
    -------
    dask.array.Array
        Shape (frame, y, x), uint8 0/255, one chunk per frame chunk of ``frames``:
        the same as ``masks(foreground_frames(frames, background_frames(u, s, vt,
        ...)), threshold=threshold, cleanup=cleanup)``.

    Raises
    ------
    InvalidParameterError
        Frames that are not gray uint8, factors that do not fit them, or a threshold
        that is not positive (or a map of another shape than a frame's).

    Notes
    -----
    Memory per task: the chunk (n frames) as uint8 and its boolean mask, one float32
    tile of :data:`pipelines.separate.TILE_BYTES`, a copy of the mask for the clean-up, and ``u`` (P x k
    float32, one chunk shared by every task).  Work: O(P k n) flops and one pass over
    the chunk's bytes in cache, against about six streaming passes over n x P float32
    through whole arrays.
    """
    if frames.ndim != _FRAME_NDIM or frames.dtype != np.uint8:
        raise InvalidParameterError(
            f"masks_from_factors needs gray uint8 frames (frame, y, x), got {frames.dtype} {frames.shape}"
        )
    n_frames, height, width = (int(n) for n in frames.shape)
    if u.ndim != 2 or s.ndim != 1 or vt.ndim != 2:
        raise InvalidParameterError("u, s and vt must be (P, k), (k,) and (k, frame) arrays")
    k = int(s.shape[0])
    if tuple(u.shape) != (height * width, k) or tuple(vt.shape) != (k, n_frames):
        raise InvalidParameterError(
            f"factors u {tuple(u.shape)}, s {tuple(s.shape)}, vt {tuple(vt.shape)} do not fit"
            f" {n_frames} frames of {height}x{width}"
        )
    level = checked_threshold(threshold, frame_shape=(height, width))
    whole = frames.rechunk({1: -1, 2: -1})
    arguments: list[object] = [
        whole,
        "tyx",
        u.rechunk({0: -1, 1: -1}),
        "pk",
        s.rechunk(-1),
        "k",
        vt.rechunk({0: -1, 1: whole.chunks[0]}),
        "kt",
    ]
    if isinstance(level, np.ndarray):
        arguments += [da.from_array(level.reshape(-1), chunks=-1), "p"]
    return da.blockwise(
        _mask_task,
        "tyx",
        *arguments,
        concatenate=True,
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), dtype=np.uint8),
        scalar_threshold=None if isinstance(level, np.ndarray) else level,
        cleanup=bool(cleanup),
        shadow_ratio=shadow_ratio,
    )


def _mask_task(
    frames: npt.NDArray[np.uint8],
    u: npt.NDArray[np.float32],
    s: npt.NDArray[np.float32],
    vt: npt.NDArray[np.float32],
    pixel_threshold: npt.NDArray[np.float32] | None = None,
    *,
    scalar_threshold: float | None,
    cleanup: bool,
    shadow_ratio: float | None,
) -> npt.NDArray[np.uint8]:
    threshold = pixel_threshold if pixel_threshold is not None else scalar_threshold
    assert threshold is not None
    return factor_mask_block(
        frames, u, s, vt, threshold=threshold, cleanup=cleanup, shadow_ratio=shadow_ratio
    )


def factor_mask_block(
    frames: npt.NDArray[np.uint8],
    u: npt.NDArray[np.float32],
    s: npt.NDArray[np.float32],
    vt: npt.NDArray[np.float32],
    *,
    threshold: float | npt.NDArray[np.float32],
    cleanup: bool,
    shadow_ratio: float | None = None,
) -> npt.NDArray[np.uint8]:
    """(n, y, x) uint8 frames, (P, k), (k,), (k, n) factors -> (n, y, x) uint8 0/255 masks.

    ``threshold`` is a number or one per pixel, shape (P,) or (y, x).  With
    ``shadow_ratio``, shadows are taken out (see :func:`masks_from_factors`).
    Memory: the boolean mask (and the shadow candidates and the background rounded
    to uint8), one float32 tile of :data:`pipelines.separate.TILE_BYTES` and the
    clean-up's copies (two for frames whose shadows had edges).
    """
    n_frames = int(frames.shape[0])
    flat = frames.reshape(n_frames, -1)
    per_pixel = np.asarray(threshold, dtype=np.float32).reshape(-1) if np.ndim(threshold) else None
    above = np.empty(flat.shape, dtype=np.bool_)
    # with a shadow ratio: the candidates and the background rounded to uint8, per tile
    shadow_shape = flat.shape if shadow_ratio is not None else (0, 0)
    shadowy, ground = np.empty(shadow_shape, dtype=np.bool_), np.empty(shadow_shape, dtype=np.uint8)
    for pixels, difference in background_tiles(u, s, vt):
        if shadow_ratio is not None:  # the tile is the background here
            shadowy[:, pixels] = shadow_candidates(flat[:, pixels], difference, ratio=shadow_ratio)
            ground[:, pixels] = rounded_background(difference)
        np.subtract(flat[:, pixels], difference, out=difference)  # uint8 - float32, in float32
        np.abs(difference, out=difference)
        limit = per_pixel[pixels] if per_pixel is not None else np.float32(threshold)
        np.greater(difference, limit, out=above[:, pixels])
    mask = above.reshape(frames.shape)
    if shadow_ratio is not None:
        without = clean_without_shadows if cleanup else drop_shadows  # cleaned as shadows ask
        mask = without(
            mask,
            shadowy.reshape(frames.shape),
            frames=frames,
            background=ground.reshape(frames.shape),
            ratio=shadow_ratio,
        )
    elif cleanup and mask.size:
        mask = clean_masks(mask)
    out: npt.NDArray[np.uint8] = mask.view(np.uint8) * np.uint8(MASK_VALUE)
    return out
