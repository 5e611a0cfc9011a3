"""The video as the lazy float32 matrix M of shape (pixel, frame) = (P, T).

Column ``t`` of M is frame ``t`` flattened in C order, so ``M[:, t].reshape(y, x)`` is
the frame again.  Gray videos have ``P = y * x``.  A color video (``frame, y, x,
channel``) is accepted and its channels count as extra rows: ``P = y * x * 3`` and row
``(i * x + j) * 3 + c`` is channel ``c`` of pixel ``(i, j)``; the decomposition does not
care, and :func:`frame_images` turns a column back into an RGB image.

Nothing here reads data: every function takes and returns lazy dask arrays, and the
uint8 to float32 conversion happens inside the graph, one chunk at a time.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import numpy.typing as npt
from dask.base import tokenize

from pipelines.shapes import image_shape, is_color
from storage.errors import InvalidParameterError

__all__ = [
    "frame_images",
    "matrix_chunk_bytes",
    "video_columns",
    "video_matrix",
]

_FRAME_NDIM = 3
_COLOR_NDIM = 4


def video_matrix(
    frames: da.Array,
    *,
    frames_per_chunk: int | None = None,
    image_rows_per_chunk: int | None = None,
) -> da.Array:
    """View a stored video as the lazy float32 matrix M (pixel, frame).

    Parameters
    ----------
    frames : dask.array.Array
        Shape (frame, y, x) or (frame, y, x, channel), uint8, as
        :func:`storage.video_array.open_video` returns it (whole frames per chunk).
    frames_per_chunk : int, optional
        Frames per chunk of M.  By default the frame chunks of ``frames`` are kept.
    image_rows_per_chunk : int, optional
        Image rows (y) per chunk of M, so a chunk holds ``image_rows_per_chunk * x
        [* 3]`` pixels.  By default a chunk holds whole frames (all P pixels).

    Returns
    -------
    dask.array.Array
        Shape (P, T), float32; lazy.  With both options left at None its chunks are
        ``((P,), frame chunks of the video)``: one chunk of M per Zarr chunk of the
        video, so building M moves no data between workers.

    Raises
    ------
    InvalidParameterError
        ``frames`` is not (frame, y, x[, 3]) uint8, or an option is below 1.

    Notes
    -----
    Memory: one task holds one uint8 chunk and its float32 copy, five times the bytes
    of a video chunk (160 MiB for the default 32 MiB video chunks).

    Any other chunking regroups the uint8 frames before the conversion (a rechunk
    moves a quarter of the bytes it would move on M; under a distributed Client dask
    picks its P2P rechunk for large arrays).  :func:`pipelines.decompose.exact_svd`
    wants ``frames_per_chunk=T`` (every frame in one chunk).  The randomized SVD runs
    on any chunking and reads M once per pass, so a regrouping would be repeated on
    every pass: with the default parameters (10 passes, two threads) the notebook's
    video (794 frames of 240x320) took 2.4-2.6 s on its own chunks and 2.4-2.9 s on
    rows of pixels with every frame, a 6000-frame video of that size 21-29 s and
    27-41 s.  So the default moves nothing.
    """
    _check_frames(frames)
    for option, value in (
        ("frames_per_chunk", frames_per_chunk),
        ("image_rows_per_chunk", image_rows_per_chunk),
    ):
        if value is not None and value < 1:
            raise InvalidParameterError(f"{option} must be a positive integer, got {value}")
    n_frames, height = int(frames.shape[0]), int(frames.shape[1])
    pixels_per_row = int(np.prod(frames.shape[2:], dtype=np.int64))
    frame_chunks: int | tuple[int, ...] = (
        frames.chunks[0] if frames_per_chunk is None else min(frames_per_chunk, max(n_frames, 1))
    )
    row_chunks: int = -1 if image_rows_per_chunk is None else min(image_rows_per_chunk, height)
    regrouped = frames.rechunk(
        {0: frame_chunks, 1: row_chunks, **{axis: -1 for axis in range(2, frames.ndim)}},
        # merging whole frame chunks is a concatenation per task, rerun cheaply on
        # every pass; distributed's P2P rechunk would be computed once and held
        method="tasks" if image_rows_per_chunk is None else None,
    )
    frame_index = "tyxc"[: frames.ndim]
    return da.blockwise(
        _frames_to_columns,
        "yt",
        regrouped,
        frame_index,
        adjust_chunks={"y": lambda rows: rows * pixels_per_row},
        concatenate=True,
        dtype=np.float32,
        meta=np.empty((0, 0), dtype=np.float32),
        name="video-matrix-" + tokenize(regrouped),
    )


def video_columns(frames: da.Array) -> da.Array:
    """View a stored video as M (pixel, frame) without converting it: uint8 columns.

    Parameters
    ----------
    frames : dask.array.Array
        Shape (frame, y, x) or (frame, y, x, channel), uint8, whole frames per chunk.

    Returns
    -------
    dask.array.Array
        Shape (P, T), uint8, chunks ``((P,), frame chunks of the video)``.  Each block
        is its video chunk seen transposed (a Fortran-ordered view, no copy), for
        kernels that convert a tile of it at a time in cache rather than a whole
        float32 chunk (:func:`video_matrix`, five times the chunk's bytes).

    Raises
    ------
    InvalidParameterError
        ``frames`` is not (frame, y, x[, 3]) uint8.
    """
    _check_frames(frames)
    whole = frames.rechunk({axis: -1 for axis in range(1, frames.ndim)})
    pixels = int(np.prod(frames.shape[1:], dtype=np.int64))
    return da.blockwise(
        _frames_as_columns,
        "pt",
        whole,
        "tyxc"[: frames.ndim].replace("y", "p"),
        adjust_chunks={"p": pixels},
        concatenate=True,
        dtype=np.uint8,
        meta=np.empty((0, 0), dtype=np.uint8),
        name="video-columns-" + tokenize(whole),
    )


def matrix_chunk_bytes(matrix: da.Array) -> int:
    """Return the bytes of the largest chunk of a dask array (e.g. M, float32)."""
    largest = [max(sizes) if sizes else 0 for sizes in matrix.chunks]
    return int(np.prod(largest, dtype=np.int64)) * int(matrix.dtype.itemsize)


def frame_images(
    column_or_matrix: npt.ArrayLike | da.Array, height: int, width: int
) -> npt.NDArray[np.generic] | da.Array:
    """Reshape columns of a (pixel, ...) array back into images.

    Parameters
    ----------
    column_or_matrix : array_like or dask.array.Array
        Shape (P,) for one column (e.g. ``U[:, 0]`` or ``M[:, t]``), or (P, n) for n
        columns, with ``P = height * width`` (gray) or ``height * width * 3`` (color).
    height, width : int
        Frame size.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        Shape (height, width[, 3]) for one column, (n, height, width[, 3]) for n
        columns; the same kind of array as the input (lazy for dask), same dtype.

    Raises
    ------
    InvalidParameterError
        P is neither ``height * width`` nor ``height * width * 3``.
    """
    array = column_or_matrix if isinstance(column_or_matrix, da.Array) else np.asarray(column_or_matrix)
    if array.ndim not in (1, 2):
        raise InvalidParameterError(
            f"frame_images needs a column (P,) or a matrix (P, n), got shape {array.shape}"
        )
    shape = image_shape(int(array.shape[0]), height, width)
    if array.ndim == 1:
        return array.reshape(shape)
    return array.T.reshape((int(array.shape[1]), *shape))


def _check_frames(frames: da.Array) -> None:
    if not isinstance(frames, da.Array):
        raise InvalidParameterError(
            f"video_matrix needs a dask array of frames, got {type(frames).__name__}; "
            "use open_video(store).frames"
        )
    if frames.ndim != _FRAME_NDIM and not is_color(frames):
        raise InvalidParameterError(
            f"video frames must have shape (frame, y, x) or (frame, y, x, 3), got {frames.shape}"
        )
    if frames.dtype != np.uint8:
        raise InvalidParameterError(f"video frames must be uint8 as stored by ingest, got {frames.dtype}")


def _frames_as_columns(block: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """(n, y, x[, c]) uint8 -> its (P, n) transposed view, each frame one column."""
    return block.reshape(block.shape[0], -1).T


def _frames_to_columns(block: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """(n, y, x[, c]) uint8 -> (P, n) float32, each frame one column.

    Fortran order, so each frame stays contiguous and the conversion is a streaming
    copy: a C-ordered result transposes in cache-unfriendly strides, 13x slower
    (0.33 s against 0.025 s for 1747 frames of 160x120); BLAS takes either order.
    """
    columns = block.reshape(block.shape[0], -1).T
    return np.asfortranarray(columns, dtype=np.float32)
