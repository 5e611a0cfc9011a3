"""The separate step: background, foreground and masks of every frame, with images and videos."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from cluster.ctrl_c import CtrlCAtBoundaries
from pipelines.background_models import FITTED_MODELS, checked_plate_window, chosen_model
from pipelines.camera_motion import CameraMotion, motion_of_shifts
from pipelines.encode_stream import Blocks, write_videos
from pipelines.factor_masks import masks_from_factors
from pipelines.images import image_png
from pipelines.mask_cleanup import CLEANUP_RULE
from pipelines.masks import AUTO_THRESHOLD_RULE, PIXEL_NOISE_FACTOR, masks
from pipelines.registration import BAND_RULE, moved_back, moved_forward, registered, unregistered
from pipelines.separate import (
    background_frames,
    background_images,
    foreground_block,
    foreground_frames,
    to_storage_foreground,
)
from pipelines.shadows import RATIO_BAND, recorded_rule
from pipelines.steps.auto_threshold import measure_auto_threshold, measure_camera_motion
from pipelines.steps.background import fit_background
from pipelines.steps.context import JobContext, step_context
from pipelines.steps.factor_choice import choose_factors, refuse_non_finite
from pipelines.steps.shadow_ratio import measure_shadow_ratio
from storage.derived import SeparationRecord, open_derived, prepare_derived, remove_derived, write_file_atomic
from storage.errors import InvalidParameterError
from storage.factors import StoredFactors
from storage.layout import FOREGROUND_ARRAY, MASKS_ARRAY
from storage.output_folder import OutputFolder
from storage.store import StoreLocation
from storage.video_array import StoredVideo, open_video
from storage.writer_lock import writer_lock

__all__ = [
    "CLEANUP",
    "SeparateSummary",
    "describe_shadows",
    "outdated_rules",
    "refuse_masks_video_without_videos",
    "refuse_plate_window_with_svd",
    "separate",
    "write_backgrounds",
]

CLEANUP = f"{CLEANUP_RULE}; {BAND_RULE}"
"""The mask clean-up :func:`pipelines.separate.masks` applies, and the border band of
registered frames (:data:`pipelines.registration.BAND_RULE`), as recorded in the store."""


def outdated_rules(record: SeparationRecord) -> list[str]:
    """How the rules a stored separation records differ from those :func:`separate` applies now.

    In words, one entry per rule that differs (the clean-up, the threshold's, the
    shadows'); empty when the separation is made by today's rules.  Settings asked for
    (a given threshold, ``--no-shadows``) are not differences.
    """
    reasons = []
    if record.cleanup != CLEANUP:
        reasons.append("by an earlier clean-up")
    if record.threshold_rule not in (AUTO_THRESHOLD_RULE, "given"):
        reasons.append("by an earlier threshold rule")
    if record.shadow_rule != recorded_rule(shadows=record.shadows):
        reasons.append("by an earlier shadow rule")
    return reasons


@dataclass(frozen=True, kw_only=True)
class SeparateSummary:
    """What :func:`separate` (or :func:`pipelines.steps.apply.apply`) wrote.

    Attributes
    ----------
    factors : str
        Factor set used.
    rank : int
        Components of the background.
    threshold : float
        Mask threshold on |foreground| (grey levels).
    outputs : list of str
        Files written in the output folder.
    wall_time_s : float
        Seconds of this call.
    """

    factors: str
    rank: int
    threshold: float
    outputs: list[str]
    wall_time_s: float


def separate(
    *,
    store: StoreLocation | str | os.PathLike[str],
    out: str | os.PathLike[str],
    factors: str | None = None,
    rank: int | None = None,
    threshold: float | None = None,
    model: str | None = None,
    plate_window_s: float | None = None,
    keep_foreground: bool = False,
    masks_video: bool = False,
    make_videos: bool = True,
    shadows: bool = True,
    context: JobContext | None = None,
) -> SeparateSummary:
    """Background, foreground and masks of every frame, from the stored video and factors.

    ``model`` chooses the background: ``svd`` the stored SVD factors (``factors``,
    ``rank``), ``median`` or ``robust`` a rank-1 background per source video fitted
    (or reused) by :func:`pipelines.steps.background.fit_background`, with a plate
    per ``plate_window_s`` seconds of a longer video (by default
    :data:`pipelines.background_models.PLATE_WINDOW_S`).  By default (``None``) it is
    ``svd`` when ``factors`` or ``rank`` is given, else ``robust``.

    ``rank=None`` uses one component per source segment: the original notebook's
    rank-1 background for one video, one background per scene for concatenated
    videos.  Measured on the notebook's own video (15 ground-truth masks, 3x3 median
    clean-up), the F-measure at the best threshold falls with the rank: 0.90 at rank
    1, 0.86 at 2, 0.77 at 5 and 10, because people who linger become components.

    Writes ``STORE/masks`` (uint8 0/255) and, with ``keep_foreground``,
    ``STORE/foreground`` (int16, grey levels, frame - background: 2 bytes per pixel
    and frame, which the video and the background determine, so it is not stored by
    default and an earlier separation's is removed), then in ``out``: ``background.png`` (one per source
    segment when the store holds several videos), ``foreground.mp4``, ``compare.mp4``
    (original | background | foreground | mask), with ``masks_video`` also
    ``masks.mp4``, and a few sample frames as PNG.  ``make_videos=False`` writes
    neither the videos nor the sample frames (and removes an earlier separation's from
    ``out``): the masks, the background images and the record only.
    ``threshold=None`` picks the threshold from the data
    (:func:`pipelines.separate.auto_threshold` on a sample of frames).  ``shadows``
    (the default) takes cast shadows out of the masks (:mod:`pipelines.shadows`: the
    scene's shadow ratio measured on the same sample; nothing is taken out when it
    shows none, nor where a region does not show the ground's pattern darkened).

    Notes
    -----
    Nothing is decomposed again.  Workers hold one chunk of frames per task plus U_k;
    this process streams the videos to the encoders one chunk of frames at a time.
    In ``foreground.mp4`` grey 128 is "no change": a pixel is ``128 + foreground / 2``.
    """
    started = time.perf_counter()
    refuse_masks_video_without_videos(masks_video=masks_video, make_videos=make_videos)
    video = open_video(store)
    if video.frames.ndim != 3:
        raise InvalidParameterError("separate works on gray videos; ingest without --color")
    model = chosen_model(model, svd_options_given=factors is not None or rank is not None)
    refuse_plate_window_with_svd(model, plate_window_s=plate_window_s)
    chosen: StoredFactors | None = None
    k = 1
    if model == "svd":
        chosen = choose_factors(video, factors)
        if chosen.method in FITTED_MODELS:
            raise InvalidParameterError(
                f"factors {chosen.name!r} are the {chosen.method} model's background, not an SVD;"
                f" choose the {chosen.method} model, or name SVD factors"
            )
        k = min(chosen.rank, len(video.segments)) if rank is None else rank
        if not 1 <= k <= chosen.rank:
            raise InvalidParameterError(
                f"--rank must be between 1 and {chosen.rank} (factors {chosen.name!r}), got {k}; "
                f"decompose with --rank {k} first, or choose a smaller --rank"
            )
    folder = OutputFolder.at(out)
    folder.prepare()  # an unusable --out fails before any computing
    height, width = video.height, video.width
    with step_context(context) as job, writer_lock(video.location, step="separate"):
        fit_s = 0.0  # a fit's own time: the report shows it as a step of its own
        if chosen is None:
            fit_started = time.perf_counter()
            chosen = fit_background(store=video, model=model, plate_window_s=plate_window_s, context=job)
            fit_s = time.perf_counter() - fit_started
            k = chosen.rank  # one background per source video and window
        client = job.computing_on(video.location)
        frames = job.frames_to_read(video)
        # a fit that registered the frames: compared with the plate moved back, masks moved forward
        shifts = chosen.frame_shifts if chosen.method in FITTED_MODELS else None
        compared = frames if shifts is None else registered(frames, shifts)
        job.say(f"separating with factors {chosen.name!r}, rank {k}")
        u, s, vt = client.persist([chosen.U[:, :k], chosen.s[:k], chosen.Vt[:k]])
        # the background's factors (P x k) here, checked before any use: the foreground is
        # computed again, in this process, as the encoders stream it
        background_factors = [np.asarray(a, dtype=np.float32) for a in job.fetch(u, s, vt)]
        refuse_non_finite(chosen.name, [bool(np.isfinite(a).all()) for a in background_factors])
        threshold_rule = "given"
        threshold_warning = None
        camera: dict[str, Any] = {}
        if threshold is None:
            threshold_rule = AUTO_THRESHOLD_RULE
            measured = measure_auto_threshold(job, compared, u, s, vt, rank=k, video=video)
            threshold, pixel_thresholds = measured.threshold, measured.pixel_thresholds
            threshold_warning = measured.warning
            camera = _camera_record(measured.camera)
            job.say(measured.describe())
        else:
            pixel_thresholds = float(threshold)
            camera = _camera_record(measure_camera_motion(job, compared, u, s, vt, rank=k, video=video))
        shadow_ratio = None
        if shadows:
            shadow_ratio = measure_shadow_ratio(
                job, compared, u, s, vt, rank=k, pixel_thresholds=pixel_thresholds
            )
            job.say(describe_shadows(shadow_ratio))
        record = SeparationRecord(
            factors=chosen.name,
            rank=k,
            threshold=float(threshold),
            video_fingerprint=video.fingerprint,
            cleanup=CLEANUP,
            factors_id=chosen.factors_id,
            threshold_rule=threshold_rule,
            pixel_noise_factor=PIXEL_NOISE_FACTOR if threshold_rule == AUTO_THRESHOLD_RULE else 0.0,
            shadows=shadows,
            shadow_ratio=shadow_ratio or 0.0,
            shadow_rule=recorded_rule(shadows=shadows),
        )
        if keep_foreground:
            background = background_frames(
                u, s, vt, rank=k, height=height, width=width, frame_chunks=frames.chunks[0]
            )
            foreground = foreground_frames(compared, background)
            arrays = {
                # one graph for both arrays: each task computes a chunk's background once
                # (shadows need the frames beside it: their masks are made from the factors)
                MASKS_ARRAY: masks(foreground, threshold=pixel_thresholds)
                if shadow_ratio is None
                else masks_from_factors(
                    compared, u, s, vt, threshold=pixel_thresholds, shadow_ratio=shadow_ratio
                ),
                FOREGROUND_ARRAY: to_storage_foreground(foreground),
            }
        else:
            # the same masks, a tile of each chunk at a time: no float32 chunk is made
            arrays = {
                MASKS_ARRAY: masks_from_factors(
                    compared, u, s, vt, threshold=pixel_thresholds, shadow_ratio=shadow_ratio
                )
            }
            remove_derived(video.location, FOREGROUND_ARRAY)
        if shifts is not None:  # in the camera's coordinates, where the frames are
            arrays = {
                name: unregistered(array, shifts, border="repeat" if name == MASKS_ARRAY else "zero")
                for name, array in arrays.items()
            }
        # nothing is held whole: each task writes its chunk's arrays
        write = prepare_derived(video.location, arrays=arrays, record=record)
        stored = client.compute(write.task)
        job.wait([stored], description="separate", frames=video.n_frames)
        stored.result()
        write.finish()
        images = background_images(u, s, vt, rank=k, height=height, width=width, segments=video.segments)
        outputs = write_backgrounds(folder, [np.asarray(i) for i in job.fetch(*images)])
    encode_started = time.perf_counter()
    arrays_s = encode_started - started - fit_s
    if make_videos:
        # the frames held in the workers' memory while the caller's context is open (a
        # context of this step's own closed above, and its held frames with it)
        originals = frames if context is not None else video.frames
        # while the caller's cluster runs, its reads stop as every wait does when the
        # cluster is left without workers; after this step's own closed, dask's threads
        compute = job.fetch if context is not None else dask.compute
        n_frames, blocks = stored_blocks(
            video,
            frames=originals,
            factors=background_factors,
            progress=job.progress,
            compute=compute,
            shifts=shifts,
        )
        if not masks_video:
            folder.masks_mp4.unlink(missing_ok=True)  # an earlier separation's, not this one's
        with CtrlCAtBoundaries() as ctrl_c:
            outputs += write_videos(
                blocks, folder, n_frames=n_frames, fps=video.fps, ctrl_c=ctrl_c, masks_video=masks_video
            )
    else:
        folder.remove_videos()
    encode_s = time.perf_counter() - encode_started
    # what this folder shows and how long it took, for the report (matched by factors_id)
    timing = {
        **record.as_attrs(),
        "separate_s": round(arrays_s, 3),
        "encode_s": round(encode_s, 3),
        "videos": make_videos,
        **({"threshold_warning": threshold_warning} if threshold_warning else {}),
        **camera,
        **({} if shifts is None else {"frames_registered": _registered_record(shifts)}),
    }
    write_file_atomic(folder.separation_json, json.dumps(timing, indent=2) + "\n")
    job.say(f"wrote {', '.join(outputs)} in {folder.path}")
    return SeparateSummary(
        factors=chosen.name,
        rank=k,
        threshold=float(threshold),
        outputs=outputs,
        wall_time_s=time.perf_counter() - started,
    )


def _registered_record(shifts: npt.NDArray[np.int64]) -> dict[str, Any]:
    """What separation.json says of a registered fit's shifts: how many frames moved, how far."""
    motion = motion_of_shifts(shifts)
    return {
        "moved_frames": motion.moved_frames,
        "frames": motion.sampled,
        "largest_shift_px": round(motion.largest_shift_px, 1),
    }


def _camera_record(camera: CameraMotion | None) -> dict[str, Any]:
    """What separation.json keeps of the sampled frames' shifts: numbers, and the warning if any."""
    if camera is None:
        return {}
    warning = camera.warning()
    return {
        "camera_motion": {
            "sampled_frames": camera.sampled,
            "moved_frames": camera.moved_frames,
            "largest_shift_px": round(camera.largest_shift_px, 1),
        },
        **({"camera_warning": warning} if warning else {}),
    }


def describe_shadows(shadow_ratio: float | None) -> str:
    """One line for the user: the shadow ratio taken out of the masks, or that none was."""
    if shadow_ratio is None:
        return "cast shadows: the sample shows no shadow ratio; no pixel taken out of the masks"
    return (
        f"cast shadows: pixels at {shadow_ratio:.2f} +- {RATIO_BAND:g} of their background's"
        " light taken out of the masks, where the ground's pattern shows through them"
        " (--no-shadows keeps them)"
    )


def refuse_plate_window_with_svd(model: str, *, plate_window_s: float | None) -> None:
    """Refuse a plate window that is not a duration, or one for the ``svd`` model (no plates).

    Raises
    ------
    InvalidParameterError
        In the command line's words.
    """
    if plate_window_s is None:
        return
    checked_plate_window(plate_window_s)
    if model == "svd":
        raise InvalidParameterError(
            "--plate-window sets how long each plate of the robust and median models serves;"
            " the svd model has none: drop --plate-window, or choose --model robust or median"
        )


def refuse_masks_video_without_videos(*, masks_video: bool, make_videos: bool) -> None:
    """Refuse asking for masks.mp4 and for no videos at once.

    Raises
    ------
    InvalidParameterError
        Both were asked for.
    """
    if masks_video and not make_videos:
        raise InvalidParameterError(
            "--masks-video writes a video and --no-videos writes none; pass one of them"
        )


def write_backgrounds(folder: OutputFolder, images: Sequence[npt.NDArray[Any]]) -> list[str]:
    """Write background images (float grey levels, (y, x)) as PNG; return the file names."""
    names = OutputFolder.background_names(len(images))
    if len(images) > 1:  # the first also under the plain name
        images = [images[0], *images]
    for file_name, image in zip(names, images, strict=True):
        write_file_atomic(folder.file(file_name), image_png(np.clip(np.rint(image), 0, 255).astype(np.uint8)))
    return names


def stored_blocks(
    video: StoredVideo,
    *,
    frames: da.Array,
    factors: Sequence[npt.NDArray[np.float32]],
    progress: bool,
    compute: Callable[..., Sequence[Any]] = dask.compute,
    shifts: npt.NDArray[np.int64] | None = None,
) -> tuple[int, Blocks]:
    """The frame count and (original, foreground, mask), chunk by chunk.

    The originals are ``frames``: ``video.frames``, or the same frames held in the
    workers' memory by an open :class:`JobContext` (nothing to decompress again).
    The masks are read from the store (they must be complete); the int16 foreground
    is computed from the original and the background's ``factors`` (U (P, k), s (k,),
    Vt (k, T)) with :func:`foreground_block`, so the store need not hold it.

    The next chunk's original and mask are read while the current one is rendered
    and encoded (one thread), so the cluster's reads overlap the caller's work.

    ``compute`` computes a chunk's two arrays (``dask.compute``, or a job context's
    :meth:`~pipelines.steps.context.JobContext.fetch`).  With ``shifts`` (T, 2), a
    registered fit's, each original is moved back to the plate for its foreground, which
    is moved forward again (:mod:`pipelines.registration`), as the stored masks were.

    Memory: two chunks of each of the three arrays at a time, plus the factors.
    """
    u, s, vt = factors
    frame_masks = open_derived(video.location, MASKS_ARRAY).data
    n_frames = int(frames.shape[0])
    step = int(frames.chunks[0][0])
    bounds = [(start, min(start + step, n_frames)) for start in range(0, n_frames, step)]

    def read(start: int, stop: int) -> tuple[Any, Any]:
        original, mask = compute(frames[start:stop], frame_masks[start:stop])
        return original, mask

    def blocks() -> Blocks:
        bar = tqdm(total=n_frames, unit="frame", desc="encode", disable=not progress, file=sys.stderr)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidsvd-read-ahead") as reader:
            ahead = reader.submit(read, *bounds[0]) if bounds else None
            for index, (start, stop) in enumerate(bounds):
                assert ahead is not None
                original, mask = ahead.result()
                ahead = reader.submit(read, *bounds[index + 1]) if index + 1 < len(bounds) else None
                if shifts is None:
                    fg = foreground_block(original, u, s, vt[:, start:stop])
                else:
                    moved = shifts[start:stop]
                    fg = moved_forward(
                        foreground_block(moved_back(original, moved), u, s, vt[:, start:stop]), moved
                    )
                bar.update(stop - start)
                yield original, fg, mask
        bar.close()

    return n_frames, blocks()
