"""The ``auto`` mask threshold of a stored video against one background, measured on the cluster."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import dask.array as da
import numpy as np
import numpy.typing as npt

from pipelines.camera_motion import CameraMotion, camera_motion, shifts_of_block
from pipelines.masks import (
    PIXEL_NOISE_FACTOR,
    auto_threshold,
    noise_pair_frames,
    noise_scale_of,
    sample_frames,
    threshold_map,
    threshold_sample_stride,
)
from pipelines.poor_fit import poor_fit_warning
from pipelines.separate import background_frames, foreground_frames
from pipelines.steps.context import JobContext
from storage.video_array import StoredVideo

__all__ = [
    "SAMPLE_FRAMES_PER_TASK",
    "THRESHOLD_SAMPLE_FRAMES",
    "MeasuredThreshold",
    "measure_auto_threshold",
    "measure_camera_motion",
    "threshold_sample",
]

THRESHOLD_SAMPLE_FRAMES = 24
"""Frames whose foreground decides the ``auto`` threshold."""

SAMPLE_FRAMES_PER_TASK = 6
"""Sampled frames per task of the threshold's sample: four tasks for the 24 frames."""


@dataclass(frozen=True, kw_only=True)
class MeasuredThreshold:
    """The ``auto`` threshold of one video against one background.

    Attributes
    ----------
    threshold : float
        The global threshold on |foreground|, grey levels
        (:func:`pipelines.masks.auto_threshold` of the sampled frames' foreground).
    pixel_thresholds : float or numpy.ndarray
        What the masks use: the global threshold, or a (y, x) float32 map of it raised
        where a pixel's frame-to-frame change is larger (:func:`pipelines.masks.threshold_map`;
        a video of one frame has no pair to measure, so the global value).
    raised_share : float
        Share of the pixels whose threshold the map raised, in [0, 1].
    warning : str or None
        :func:`pipelines.poor_fit.poor_fit_warning`'s line when the background does not
        fit the still pixels (it was also issued as a ``RuntimeWarning``).
    camera : CameraMotion or None
        The sampled frames' shifts against the background
        (:func:`pipelines.camera_motion.camera_motion`); its warning, when the camera
        moved, was also issued as a ``RuntimeWarning``.  None where not measured.
    """

    threshold: float
    pixel_thresholds: float | npt.NDArray[np.float32]
    raised_share: float
    warning: str | None = None
    camera: CameraMotion | None = None

    def describe(self) -> str:
        """One line for the user: the threshold and where it was raised."""
        return (
            f"auto threshold: |foreground| > {self.threshold:.1f} grey levels, raised on"
            f" {self.raised_share:.1%} of the pixels to {PIXEL_NOISE_FACTOR:g} sigmas of their"
            " frame-to-frame change"
        )


def measure_auto_threshold(
    job: JobContext,
    frames: da.Array,
    u: da.Array,
    s: da.Array,
    vt: da.Array,
    *,
    rank: int,
    video: StoredVideo | None = None,
) -> MeasuredThreshold:
    """Measure the ``auto`` threshold of ``frames`` against the background ``u diag(s) vt``.

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
    video : StoredVideo, optional
        The video ``frames`` come from: their noise scale is then the context's
        (:meth:`pipelines.steps.context.JobContext.noise_scale`), measured once for
        every background of this context.

    Returns
    -------
    MeasuredThreshold

    Warns
    -----
    RuntimeWarning
        When the threshold shows a background that does not fit the still pixels
        (:func:`pipelines.poor_fit.poor_fit_warning`): the masks will be nearly empty.
        When the sampled frames show a camera that moved
        (:meth:`pipelines.camera_motion.CameraMotion.warning`): once per video and
        context when ``video`` is given (:meth:`JobContext.warn_once`).

    Notes
    -----
    One graph reads the :data:`THRESHOLD_SAMPLE_FRAMES` sampled frames (a few per
    task) and the frame pairs of :func:`pipelines.masks.noise_pair_frames`, whatever
    the length of the video: a chunk holding both is read once.  The same tasks'
    frames and backgrounds give each sampled frame's shift
    (:func:`pipelines.camera_motion.shifts_of_block`, three numbers a frame).  Memory
    per task: a float32 background and foreground of :data:`SAMPLE_FRAMES_PER_TASK`
    frames; this process receives a strided sample of the foreground, the shifts and
    one (y, x) noise map.
    """
    n_frames = int(frames.shape[0])
    picked_frames, sample_background = threshold_sample(frames, u, s, vt, rank=rank)
    sample = foreground_frames(picked_frames, sample_background)
    # only the values auto_threshold uses: each task returns a stride-th of its frames
    sample = sample.reshape(-1)[:: threshold_sample_stride(sample.size)]
    shifts = _sample_shifts(picked_frames, sample_background)
    if video is not None:
        noise = job.noise_scale(video, frames)
        measured = job.fetch(sample, shifts) + ([] if noise is None else job.gather([noise]))
    else:
        firsts = noise_pair_frames(n_frames)
        measured = job.fetch(
            *([sample, shifts, noise_scale_of(frames, firsts)] if firsts.size else [sample, shifts])
        )
    threshold = float(auto_threshold(measured[0]))
    warning = poor_fit_warning(measured[0], threshold=threshold)
    if warning is not None:
        warnings.warn(warning, RuntimeWarning, stacklevel=2)
    camera = _told_of(job, camera_motion(measured[1]), video=video)
    pixel_thresholds: float | npt.NDArray[np.float32] = threshold
    if len(measured) > 2:
        pixel_thresholds = threshold_map(threshold, measured[2])
    raised_share = float(np.mean(np.asarray(pixel_thresholds) > threshold))
    return MeasuredThreshold(
        threshold=threshold,
        pixel_thresholds=pixel_thresholds,
        raised_share=raised_share,
        warning=warning,
        camera=camera,
    )


def measure_camera_motion(
    job: JobContext,
    frames: da.Array,
    u: da.Array,
    s: da.Array,
    vt: da.Array,
    *,
    rank: int,
    video: StoredVideo | None = None,
) -> CameraMotion:
    """Whether the camera moved, for a separation whose threshold is given.

    The check :func:`measure_auto_threshold` makes on its sampled frames, alone: the same
    :data:`THRESHOLD_SAMPLE_FRAMES` frames against their backgrounds, and the same
    warning, said once per video and context when ``video`` is given.  Arguments as
    there.  Cost: one read of the sampled frames (a few per task) and a
    :func:`pipelines.camera_motion.frame_shift` each; this process receives three numbers
    a frame.
    """
    picked_frames, sample_background = threshold_sample(frames, u, s, vt, rank=rank)
    rows = job.fetch(_sample_shifts(picked_frames, sample_background))[0]
    return _told_of(job, camera_motion(rows), video=video)


def _sample_shifts(picked_frames: da.Array, sample_background: da.Array) -> da.Array:
    """(n, 3) rows of :func:`pipelines.camera_motion.shifts_of_block`, one task per chunk; lazy."""
    return da.map_blocks(
        shifts_of_block,
        picked_frames,
        sample_background,
        drop_axis=2,
        chunks=(picked_frames.chunks[0], (3,)),
        dtype=np.float32,
        meta=np.empty((0, 0), np.float32),
    )


def _told_of(job: JobContext, camera: CameraMotion, *, video: StoredVideo | None) -> CameraMotion:
    """Warn once per video and context (else once here) when ``camera`` moved; return it."""
    camera_warning = camera.warning()
    if camera_warning is not None and video is not None:  # the video's, said once per command
        job.warn_once(("camera", video.location.url, video.fingerprint), camera_warning)
    elif camera_warning is not None:
        warnings.warn(camera_warning, RuntimeWarning, stacklevel=3)
    return camera


def threshold_sample(
    frames: da.Array, u: da.Array, s: da.Array, vt: da.Array, *, rank: int, row_step: int = 1
) -> tuple[da.Array, da.Array]:
    """The frames the ``auto`` threshold samples and their background, lazily.

    ``frames`` (frame, y, x) uint8; ``u``, ``s``, ``vt`` the background's factors,
    ``rank`` of them used.  Returns the :data:`THRESHOLD_SAMPLE_FRAMES` sampled frames
    (:func:`pipelines.masks.sample_frames`), :data:`SAMPLE_FRAMES_PER_TASK` per chunk,
    and their float32 background in the same chunks: a read of the picked frames, not
    of every chunk that holds one, and a few frames per task, so that their
    backgrounds (float32 arrays of 88 MB for 24 frames of 720p) are made on every
    thread.  With ``row_step``, only every ``row_step``-th row of each frame, and the
    background of those rows alone (U's rows of those pixels).
    """
    n_frames, height, width = (int(n) for n in frames.shape)
    picked = sample_frames(n_frames, THRESHOLD_SAMPLE_FRAMES)
    picked_frames = frames[picked]
    if row_step > 1:
        rows = len(range(0, height, row_step))
        picked_frames = picked_frames[:, ::row_step]
        u = u[:, :rank].reshape(height, width, rank)[::row_step].reshape(rows * width, rank)
        height = rows
    picked_frames = picked_frames.rechunk({0: SAMPLE_FRAMES_PER_TASK})
    sample_background = background_frames(
        u, s, vt[:, picked], rank=rank, height=height, width=width, frame_chunks=picked_frames.chunks[0]
    )
    return picked_frames, sample_background
