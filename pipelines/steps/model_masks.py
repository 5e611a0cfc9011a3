"""Each background model's masks of a few frames, in memory: models scored side by side.

``vidsvd evaluate --models robust,median,svd`` scores the models against the same truth
without separating the video once per model: the stored masks (of the model the
separation used) stay as they are, and each model's masks of the truth's frames are
made as ``separate`` would make them, with the ``auto`` threshold.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipelines.background_models import BACKGROUND_MODELS, FITTED_MODELS
from pipelines.factor_masks import masks_from_factors
from pipelines.registration import moved_forward, registered
from pipelines.steps.auto_threshold import measure_auto_threshold
from pipelines.steps.background import fit_background, stored_plate_window
from pipelines.steps.context import JobContext
from pipelines.steps.factor_choice import choose_factors, finite_flags, refuse_non_finite
from pipelines.steps.shadow_ratio import measure_shadow_ratio
from storage.errors import InvalidParameterError
from storage.video_array import StoredVideo

__all__ = ["ModelMasks", "model_masks"]


@dataclass(frozen=True, kw_only=True)
class ModelMasks:
    """One model's masks of the wanted frames.

    Attributes
    ----------
    model : str
        ``robust``, ``median`` or ``svd``.
    factors : str
        The factor set the background came from.
    rank : int
        Components of the background (one per source video and plate window, or the
        SVD's one per source video).
    threshold : float
        The ``auto`` threshold, grey levels (raised per pixel where the video varies).
    masks : numpy.ndarray
        (frame, y, x) bool, the wanted frames in the order asked.
    fit_s : float or None
        Seconds the factors took when they were computed (as recorded with them).
    """

    model: str
    factors: str
    rank: int
    threshold: float
    masks: npt.NDArray[np.bool_]
    fit_s: float | None


def model_masks(
    video: StoredVideo, *, model: str, frames: Sequence[int], context: JobContext, shadows: bool = True
) -> ModelMasks:
    """The masks ``separate --model MODEL`` would make of ``frames``, without writing them.

    ``robust`` and ``median`` are fitted, or reused when the store holds them for this
    video (:func:`pipelines.steps.background.fit_background`, which writes their factors:
    a later ``separate`` with that model reuses them); ``svd`` uses the SVD factors of
    highest rank, one component per source video, as ``separate --model svd`` does.

    Parameters
    ----------
    video : StoredVideo
        A gray video.
    model : {"robust", "median", "svd"}
    frames : sequence of int
        Frame indices, each in ``[0, n_frames)``.
    context : JobContext
        Where to compute.
    shadows : bool
        Cast shadows taken out, as ``separate`` does by default (the shadow ratio
        measured against this model's background); False: kept.

    Returns
    -------
    ModelMasks

    Raises
    ------
    InvalidParameterError
        An unknown model, or a colour video.
    StoreNotFoundError
        ``svd`` without SVD factors of this video (decompose first).

    Notes
    -----
    Beyond a fit: the threshold's sample (:func:`pipelines.steps.auto_threshold.measure_auto_threshold`)
    and a read of the wanted frames.  Memory here: their masks, one byte per pixel.
    """
    if model not in BACKGROUND_MODELS:
        raise InvalidParameterError(f"models are {', '.join(BACKGROUND_MODELS)}, got {model!r}")
    if video.frames.ndim != 3:
        raise InvalidParameterError("the models work on gray videos; ingest without --color")
    if model in FITTED_MODELS:
        # the stored fit as it is (its --plate-window too), fitted with the defaults when missing
        window = stored_plate_window(video, model=model)
        chosen = fit_background(store=video, model=model, plate_window_s=window, context=context)
        rank = chosen.rank
    else:
        chosen = choose_factors(video, None)
        rank = min(chosen.rank, len(video.segments))
    client = context.computing_on(video.location)
    all_frames = context.frames_to_read(video)
    # a fit that registered the frames: compared moved back, masks moved forward (as separate does)
    shifts = chosen.frame_shifts if model in FITTED_MODELS else None
    if shifts is not None:
        all_frames = registered(all_frames, shifts)
    u, s, vt = client.persist([chosen.U[:, :rank], chosen.s[:rank], chosen.Vt[:rank]])
    refuse_non_finite(chosen.name, [bool(flag) for flag in context.fetch(*finite_flags(u, s, vt))])
    started = time.perf_counter()
    measured = measure_auto_threshold(context, all_frames, u, s, vt, rank=rank, video=video)
    shadow_ratio = None
    if shadows:
        thresholds = measured.pixel_thresholds
        shadow_ratio = measure_shadow_ratio(
            context, all_frames, u, s, vt, rank=rank, pixel_thresholds=thresholds
        )
    wanted = np.asarray(frames, dtype=np.intp)
    found = masks_from_factors(
        all_frames[wanted],
        u,
        s,
        vt[:, wanted],
        threshold=measured.pixel_thresholds,
        shadow_ratio=shadow_ratio,
    )
    predicted = np.asarray(context.fetch(found)[0]) > 0
    if shifts is not None:
        predicted = moved_forward(predicted, shifts[wanted], border="repeat")
    shadows_taken = ""
    if shadows:
        shadows_taken = (
            ", no shadow ratio" if shadow_ratio is None else f", shadows at {shadow_ratio:.2f} taken out"
        )
    context.say(
        f"{model}: factors {chosen.name!r}, rank {rank}, {measured.describe()}{shadows_taken};"
        f" {len(wanted)} frames' masks in {time.perf_counter() - started:.1f} s"
    )
    return ModelMasks(
        model=model,
        factors=chosen.name,
        rank=rank,
        threshold=measured.threshold,
        masks=predicted,
        fit_s=chosen.wall_time_s,
    )
