"""The scene's shadow ratio of a stored video against one background, measured on the cluster."""

from __future__ import annotations

import math
from typing import Final

import dask.array as da
import numpy as np
import numpy.typing as npt

from pipelines.shadows import MIN_SAMPLE_PIXELS, RATIO_BINS, ratio_counts, shadow_ratio_of
from pipelines.steps.auto_threshold import THRESHOLD_SAMPLE_FRAMES, threshold_sample
from pipelines.steps.context import JobContext

__all__ = ["RATIO_SAMPLE_VALUES", "measure_shadow_ratio", "ratio_row_step"]

RATIO_SAMPLE_VALUES: Final = 2**21
"""Pixels (over all sampled frames) the shadow ratio is counted on, at most: every
``ratio_row_step``-th row of each frame.  A mode of 70 bins needs far fewer masked
pixels than the ~10^5 this leaves at a few percent of foreground; counting every pixel
of the 24 frames of 720p (22 million values) took a quarter of a second of a
separation (README, "Background models")."""


def ratio_row_step(*, n_frames: int, height: int, width: int) -> int:
    """Every how many rows the ratio is counted: 1 unless the sample exceeds :data:`RATIO_SAMPLE_VALUES`."""
    return max(1, math.ceil(n_frames * height * width / RATIO_SAMPLE_VALUES))


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
    job, frames, u, s, vt, rank
        As :func:`pipelines.steps.auto_threshold.measure_auto_threshold` takes them.
    pixel_thresholds : float or numpy.ndarray
        The masks' threshold: grey levels, or a (y, x) map of them.

    Returns
    -------
    float or None
        :func:`pipelines.shadows.shadow_ratio_of` the ratio counts of the frames the
        ``auto`` threshold samples (:func:`pipelines.steps.auto_threshold.threshold_sample`), on every
        :func:`ratio_row_step`-th row (of which
        :data:`pipelines.shadows.MIN_SAMPLE_PIXELS` / step must count); None when they
        show no shadow ratio.

    Notes
    -----
    One graph over the sampled frames, a few per task, whatever the length of the
    video; each task returns :data:`pipelines.shadows.RATIO_BINS` counts.  Memory per
    task: a float32 background of its frames' counted rows, at most
    :data:`RATIO_SAMPLE_VALUES` values in all.
    """
    n_frames, height, width = (int(n) for n in frames.shape)
    step = ratio_row_step(n_frames=min(n_frames, THRESHOLD_SAMPLE_FRAMES), height=height, width=width)
    picked_frames, sample_background = threshold_sample(frames, u, s, vt, rank=rank, row_step=step)
    level = np.broadcast_to(np.asarray(pixel_thresholds, dtype=np.float32), (height, width))[::step]
    counts = da.blockwise(
        _counts_block,
        "tb",
        picked_frames.rechunk({1: -1, 2: -1}),
        "tyx",
        sample_background.rechunk({1: -1, 2: -1}),
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
    return shadow_ratio_of(measured, min_pixels=math.ceil(MIN_SAMPLE_PIXELS / step))


def _counts_block(
    frames: npt.NDArray[np.uint8], background: npt.NDArray[np.float32], level: npt.NDArray[np.float32]
) -> npt.NDArray[np.int64]:
    above = np.abs(frames.astype(np.float32) - background) > level
    return ratio_counts(frames, background, above)[np.newaxis]
