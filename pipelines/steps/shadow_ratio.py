"""The scene's shadow ratio of a stored video against one background, measured on the cluster."""

from __future__ import annotations

import dask.array as da
import numpy as np
import numpy.typing as npt

from pipelines.masks import sample_frames
from pipelines.separate import background_frames
from pipelines.shadows import RATIO_BINS, ratio_counts, shadow_ratio_of
from pipelines.steps.auto_threshold import SAMPLE_FRAMES_PER_TASK, THRESHOLD_SAMPLE_FRAMES
from pipelines.steps.context import JobContext

__all__ = ["measure_shadow_ratio"]


def measure_shadow_ratio(
    job: JobContext,
    frames: da.Array,
    u: da.Array,
    s: da.Array,
    vt: da.Array,
    *,
    rank: int,
    pixel_thresholds: float | npt.NDArray[np.float32],
) -> float | None:
    """The shadow ratio of ``frames`` against ``u diag(s) vt`` (:mod:`pipelines.shadows`), or None.

    Parameters
    ----------
    job : JobContext
        Where to compute.
    frames : dask.array.Array
        The stored gray video, (frame, y, x) uint8.
    u, s, vt : dask.array.Array
        The background's factors, (P, k), (k,) and (k, frame); ``rank`` of them are used.
    rank : int
        Components of the background, >= 1.
    pixel_thresholds : float or numpy.ndarray
        The masks' threshold: grey levels, or a (y, x) map of them.

    Returns
    -------
    float or None
        :func:`pipelines.shadows.shadow_ratio_of` the ratio counts of the frames
        the ``auto`` threshold samples (:data:`THRESHOLD_SAMPLE_FRAMES`); None when
        they show no shadow ratio.

    Notes
    -----
    One graph over the sampled frames, :data:`SAMPLE_FRAMES_PER_TASK` per task, whatever
    the length of the video; each task returns :data:`pipelines.shadows.RATIO_BINS`
    counts.  Memory per task: a float32 background of its frames.
    """
    n_frames, height, width = (int(n) for n in frames.shape)
    picked = sample_frames(n_frames, THRESHOLD_SAMPLE_FRAMES)
    picked_frames = frames[picked].rechunk({0: SAMPLE_FRAMES_PER_TASK, 1: -1, 2: -1})
    sample_background = background_frames(
        u, s, vt[:, picked], rank=rank, height=height, width=width, frame_chunks=picked_frames.chunks[0]
    ).rechunk({1: -1, 2: -1})
    level = np.broadcast_to(np.asarray(pixel_thresholds, dtype=np.float32), (height, width))
    counts = da.blockwise(
        _counts_block,
        "tb",
        picked_frames,
        "tyx",
        sample_background,
        "tyx",
        da.from_array(np.ascontiguousarray(level), chunks=-1),
        "yx",
        new_axes={"b": RATIO_BINS},
        adjust_chunks={"t": 1},
        concatenate=True,
        dtype=np.int64,
        meta=np.empty((0, 0), dtype=np.int64),
    ).sum(axis=0)
    (measured,) = job.fetch(counts)
    return shadow_ratio_of(measured)


def _counts_block(
    frames: npt.NDArray[np.uint8], background: npt.NDArray[np.float32], level: npt.NDArray[np.float32]
) -> npt.NDArray[np.int64]:
    above = np.abs(frames.astype(np.float32) - background) > level
    return ratio_counts(frames, background, above)[np.newaxis]
