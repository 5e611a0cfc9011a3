"""The background-model step: fit the median or robust background and persist it as factors."""

from __future__ import annotations

import os
import time

import numpy as np

from cluster.client import describe
from pipelines.background_models import (
    FITTED_MODELS,
    coarse_counts,
    fine_counts,
    frame_gains,
    median_bin,
    median_from_counts,
    segment_factors,
)
from pipelines.steps.context import JobContext, step_context
from storage.errors import InvalidParameterError
from storage.factor_lookup import complete_factors
from storage.factors import StoredFactors, open_factors, write_factors
from storage.store import StoreLocation
from storage.video_array import StoredVideo, open_video
from storage.writer_lock import writer_lock

__all__ = ["fit_background"]

_PASSES = {"median": 2, "robust": 3}  # reads of the video, per model of FITTED_MODELS


def fit_background(
    *,
    store: StoreLocation | str | os.PathLike[str] | StoredVideo,
    model: str,
    force: bool = False,
    context: JobContext | None = None,
) -> StoredFactors:
    """Fit the ``median`` or ``robust`` background of the stored video; persist it as factors.

    The factors go to ``STORE/factors/<model>`` (rank 1 per source video, see
    :mod:`pipelines.background_models`), with the model and its passes over the video
    in their attributes.  Complete factors of the same model and video are reused
    unless ``force``.

    Raises
    ------
    InvalidParameterError
        An unknown model, ``svd`` (decompose fits that one), or a colour video.

    Notes
    -----
    Reads the uint8 video 2 (median) or 3 (robust) times; each task holds one chunk of
    frames and a (P, 16) uint32 partial; this process holds the plate and the gains.
    """
    if model not in FITTED_MODELS:
        raise InvalidParameterError(f"fit_background fits {', '.join(FITTED_MODELS)}, got model={model!r}")
    started = time.perf_counter()
    video = store if isinstance(store, StoredVideo) else open_video(store)
    with writer_lock(video.location, step=f"fit {model} background"):
        return _fit(video, model=model, force=force, context=context, started=started)


def _fit(
    video: StoredVideo, *, model: str, force: bool, context: JobContext | None, started: float
) -> StoredFactors:
    """Reuse or fit and write the background; the writer lock is held."""
    if not force and any(
        summary.name == summary.method == model
        for summary in complete_factors(video.location, video_fingerprint=video.fingerprint)
    ):
        return open_factors(video.location, model, expected_fingerprint=video.fingerprint)
    with step_context(context) as job:
        client = job.computing_on(video.location)
        job.say(f"fitting the {model} background ({_PASSES[model]} reads of the video)")
        plates, gains = [], []
        for number, (start, stop) in enumerate(video.segments):
            frames = video.frames[start:stop]
            label = f"{model}" + (f", video {number + 1}" if len(video.segments) > 1 else "")
            counted = client.compute(coarse_counts(frames))
            job.wait([counted], description=f"{label}: pass 1", frames=stop - start)
            coarse = np.asarray(counted.result())
            counted = client.compute(fine_counts(frames, median_bin(coarse, n_frames=stop - start)))
            job.wait([counted], description=f"{label}: pass 2", frames=stop - start)
            plate = median_from_counts(coarse, np.asarray(counted.result()), n_frames=stop - start)
            if model == "robust":
                measured = client.compute(frame_gains(frames, plate))
                job.wait([measured], description=f"{label}: pass 3", frames=stop - start)
                gains.append(np.asarray(measured.result(), dtype=np.float64))
            else:
                gains.append(np.ones(stop - start))
            plates.append(plate)
        factors = segment_factors(plates, gains, video.segments, n_frames=video.n_frames)
        write_factors(
            video.location,
            name=model,
            U=factors.U,
            s=factors.s,
            Vt=factors.Vt,
            attrs={
                "method": model,
                "model": model,
                "passes": _PASSES[model],
                "video_fingerprint": video.fingerprint,
                "wall_time_s": round(time.perf_counter() - started, 3),
                "cluster": describe(client),
            },
            overwrite=True,
        )
    return open_factors(video.location, model, expected_fingerprint=video.fingerprint)
