"""The apply step: new footage of the same camera separated with persisted factors."""

from __future__ import annotations

import os
import sys
import time
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from cluster.ctrl_c import CtrlCAtBoundaries
from pipelines.background_models import FITTED_MODELS
from pipelines.blocks_ahead import blocks_ahead
from pipelines.camera_motion import camera_motion, shifts_of_block
from pipelines.encode_stream import Blocks, write_videos
from pipelines.footage_registration import LATER_PROBES, FootageRegistration
from pipelines.masks import auto_threshold, mask_block, pixel_noise_scale, sample_frames, threshold_map
from pipelines.poor_fit import poor_fit_warning
from pipelines.registration import moved_back, moved_forward
from pipelines.separate import project_out_block, storage_foreground_block
from pipelines.shadows import SHADOW_RULE, mask_block_without_shadows
from pipelines.steps.auto_threshold import THRESHOLD_SAMPLE_FRAMES
from pipelines.steps.context import JobContext
from pipelines.steps.factor_choice import choose_factors, require_finite_factors
from pipelines.steps.separate import SeparateSummary, describe_shadows
from storage.derived import read_separation
from storage.errors import InconsistentResultError, InvalidParameterError
from storage.output_folder import OutputFolder
from storage.store import StoreLocation
from storage.video_array import open_video
from storage.video_decoder import DecodeOptions, decode_blocks, probe_video

__all__ = ["apply"]


def apply(
    *,
    store: StoreLocation | str | os.PathLike[str],
    video: str | os.PathLike[str],
    out: str | os.PathLike[str],
    factors: str | None = None,
    rank: int | None = None,
    threshold: float | None = None,
    masks_video: bool = False,
    context: JobContext | None = None,
) -> SeparateSummary:
    """Separate new footage of the same camera with persisted factors, no decomposition.

    The new video is decoded as the stored one was (its frame rate, size, gray) and,
    chunk by chunk, ``foreground = x - U_k (U_k^T x)``: the part of each frame that
    the stored background components do not explain.  The factors default to those
    ``separate`` used (the robust background unless told otherwise), else the best
    SVD.  A fitted background (``median``, ``robust``) is applied as the
    least-squares fit of its plates to each frame (one gain per plate, the span of
    the plates orthonormalised), not with the median-of-ratios gain it was fitted
    with: close for one plate, approximate for several.  Writes ``foreground.mp4``,
    ``compare.mp4`` and sample frames in ``out`` (nothing in the store).  The threshold
    defaults to the one ``separate`` stored, else the ``auto`` rule on the first chunk;
    a separation that took cast shadows out of its masks (``separate``'s default) has
    the same shadow ratio taken out here, by the same rule.  With ``masks_video``, also
    ``masks.mp4``.

    A fitted background registers the footage where it sits away from the plate (a
    camera that shakes, or was aimed a little elsewhere since): from the first chunk
    where a few probed frames agree on a shift
    (:class:`pipelines.footage_registration.FootageRegistration`), each frame is moved
    back by its own shift before it is compared with the plate, and its mask and
    foreground are moved forward again, as ``separate`` does with a registered fit.

    Warns
    -----
    RuntimeWarning
        When the threshold shows a background that does not fit, and, for the SVD's
        factors (which are not registered), once, when the frames the threshold samples
        from the first chunk, or the few probed in a later one, sit away from their
        background.

    Raises
    ------
    InvalidParameterError
        The footage's frame size matches neither the stored video's nor its sources'.
    InconsistentResultError
        The stored separation took shadows out by an earlier rule than this version's, or
        was made from an earlier write of the factors it names.

    Notes
    -----
    Memory: U_k (P x k float32) plus a few chunks of frames; runs in this process
    on numpy blocks (the projection is one small matrix product per chunk, no dask
    graph), so ``context`` gives only the progress bar and the log.  Registering costs
    a shift per frame (:class:`pipelines.camera_motion.ShiftEstimator`), probing a few
    per chunk until then.
    """
    started = time.perf_counter()
    job = context or JobContext()
    stored = open_video(store)
    recorded = read_separation(stored.location)
    if recorded is not None and not (recorded.complete and recorded.video_fingerprint == stored.fingerprint):
        recorded = None
    if recorded is not None and recorded.shadow_ratio > 0 and recorded.shadow_rule != SHADOW_RULE:
        raise InconsistentResultError(
            f"the separation in {stored.location} took cast shadows out by an earlier rule, which apply"
            f" cannot repeat; separate again first (`vidsvd separate --store {stored.location}`)"
        )
    if factors is None and rank is None and recorded is not None:
        factors = recorded.factors  # the background separate used, robust by default
    chosen = choose_factors(stored, factors)
    if recorded is not None and recorded.factors == chosen.name and recorded.factors_id != chosen.factors_id:
        raise InconsistentResultError(
            f"the separation in {stored.location} was made from an earlier write of the factors"
            f" {chosen.name!r} (computed or fitted again since), whose threshold and shadows do not"
            f" belong to these; separate again first (`vidsvd separate --store {stored.location}`)"
        )
    if rank is None:  # every plate of a fitted model (per source video and window); the SVD's first
        k = chosen.rank if chosen.method in FITTED_MODELS else min(chosen.rank, len(stored.segments))
    else:
        k = rank
    if not 1 <= k <= chosen.rank:
        raise InvalidParameterError(f"--rank must be between 1 and {chosen.rank}, got {k}")
    require_finite_factors(chosen, rank=k)
    info = probe_video(video)
    allowed = {(stored.width, stored.height)} | {
        (source.native_width, source.native_height) for source in stored.sources
    }
    if (info.width, info.height) not in allowed:
        raise InvalidParameterError(
            f"{video} is {info.width}x{info.height} but the factors are for "
            f"{' or '.join(f'{w}x{h}' for w, h in sorted(allowed))} footage; apply needs the same camera"
        )
    folder = OutputFolder.at(out)
    folder.prepare()
    job.say(f"applying factors {chosen.name!r} ({chosen.method}), rank {k}")
    # auto, or the threshold separate chose by its auto rule: raised per pixel as
    # separate does, measured on the new footage's first chunk (its own leaves, water,
    # noise); a threshold given here is used as is, for every pixel
    per_pixel = threshold is None and (recorded is None or recorded.pixel_noise_factor > 0)
    if threshold is None and recorded is not None:
        threshold = recorded.threshold
    shadow_ratio = recorded.shadow_ratio if recorded is not None and recorded.shadow_ratio > 0 else None
    if recorded is not None and recorded.shadows:
        job.say(describe_shadows(shadow_ratio))
    components = np.asarray(chosen.U[:, :k].compute(), dtype=np.float64)  # (P, k)
    if chosen.method in FITTED_MODELS:
        # One plate per source video and window, not orthogonal to each other: project onto their span.
        components = np.linalg.qr(components)[0]
    basis = np.ascontiguousarray(components, dtype=np.float32)
    if basis.shape[0] != stored.height * stored.width:
        raise InvalidParameterError("apply works on gray videos; ingest without --color")
    options = DecodeOptions(width=stored.width, height=stored.height, fps=stored.ingest_fps)
    chunk = int(stored.frames.chunks[0][0])
    total = info.estimated_frames(options.fps)
    state: dict[str, Any] = {}

    fitted = chosen.method in FITTED_MODELS

    def blocks() -> Blocks:
        bar = tqdm(total=total or None, unit="frame", desc="apply", disable=not job.progress, file=sys.stderr)
        for frames in decode_blocks(info, options, block_frames=chunk):
            first = "threshold" not in state
            shifts = np.zeros((len(frames), 2), np.int64)
            if fitted:
                if first:
                    state["registration"] = _footage_registration(frames, basis)
                registration: FootageRegistration = state["registration"]
                waiting = registration.started is None
                shifts = registration.shifts(frames)
                if waiting and registration.started is not None:
                    with tqdm.external_write_mode(file=sys.stderr):  # a line of its own, not the bar's
                        _say_registration_start(job, registration)
            moved = bool(shifts.any())
            compared = moved_back(frames, shifts) if moved else frames
            foreground = project_out_block(compared, basis)  # x - U_k (U_k^T x), float32
            if first:
                sample = foreground[sample_frames(len(frames), THRESHOLD_SAMPLE_FRAMES)]
                state["threshold"] = threshold if threshold is not None else auto_threshold(sample)
                auto = threshold is None
                warning = poor_fit_warning(sample, threshold=state["threshold"]) if auto else None
                if warning is not None:
                    with tqdm.external_write_mode(file=sys.stderr):
                        warnings.warn(warning, RuntimeWarning, stacklevel=2)
                state["levels"] = state["threshold"]
                if per_pixel and len(frames) > 1:
                    state["levels"] = threshold_map(
                        state["threshold"], pixel_noise_scale(compared[:-1], compared[1:])
                    )
                with tqdm.external_write_mode(file=sys.stderr):
                    job.say(f"threshold: |foreground| > {state['threshold']:.1f} grey levels")
            if not fitted and not state.get("camera_told"):  # the SVD's factors are not registered
                probes = THRESHOLD_SAMPLE_FRAMES if first else LATER_PROBES
                camera_warning = _camera_warning(frames, foreground, probes=probes)
                if camera_warning is not None:
                    state["camera_told"] = True
                    with tqdm.external_write_mode(file=sys.stderr):
                        warnings.warn(camera_warning, RuntimeWarning, stacklevel=2)
            if shadow_ratio is None:
                frame_masks = mask_block(foreground, threshold=state["levels"], cleanup=True)
            else:
                frame_masks = mask_block_without_shadows(
                    foreground, compared, threshold=state["levels"], ratio=shadow_ratio
                )
            if moved:  # back in the camera's coordinates, where the footage shows them
                frame_masks, foreground = (
                    moved_forward(frame_masks, shifts, border="repeat"),
                    moved_forward(foreground, shifts),
                )
            bar.update(len(frames))
            yield frames, storage_foreground_block(foreground), frame_masks
        bar.close()

    with CtrlCAtBoundaries() as ctrl_c:
        fps = options.fps or info.fps
        outputs = write_videos(  # the next block computed while the last is encoded
            blocks_ahead(blocks()),
            folder,
            n_frames=max(total, 1),
            fps=fps,
            ctrl_c=ctrl_c,
            masks_video=masks_video,
        )
    registration = state.get("registration")
    if registration is not None and registration.started is not None:
        job.say(
            f"registered {registration.registered_frames} of {registration.frames_seen} frames to the"
            f" background, up to {registration.largest_shift_px:.0f} pixels"
        )
    return SeparateSummary(
        factors=chosen.name,
        rank=k,
        threshold=state.get("threshold", float("nan")),
        outputs=outputs,
        wall_time_s=time.perf_counter() - started,
    )


def _camera_warning(
    frames: npt.NDArray[np.uint8], foreground: npt.NDArray[np.float32], *, probes: int
) -> str | None:
    """The camera's warning for a block of new footage against the stored background, or None.

    ``probes`` frames spread over the block (n, y, x), each measured against its
    background (the frame minus its foreground): new footage of a camera aimed a little
    elsewhere since, or that shakes or was knocked, is told of as ``separate`` tells of
    it (more than a quarter of the probes moved).  Cost: a
    :func:`pipelines.camera_motion.frame_shift` per probe.
    """
    picked = sample_frames(len(frames), probes)
    backgrounds = frames[picked].astype(np.float32) - foreground[picked]
    return camera_motion(shifts_of_block(frames[picked], backgrounds)).warning()


def _footage_registration(
    frames: npt.NDArray[np.uint8], basis: npt.NDArray[np.float32]
) -> FootageRegistration:
    """The registration of new footage against the stored background, from its first block.

    The plate measured against is the background of the mean of the frames the
    threshold samples from ``frames`` (n, y, x): their mean projected onto ``basis``
    (P, k, orthonormal columns), i.e. the stored plate scaled to the footage's light (a
    combination of the plates where there are several).  The mean of shaken frames is
    blurred; its projection onto a sharp plate is not.
    """
    picked = sample_frames(len(frames), THRESHOLD_SAMPLE_FRAMES)
    mean = frames[picked].reshape(len(picked), -1).mean(axis=0, dtype=np.float64).astype(np.float32)
    plate = basis @ (basis.T @ mean)
    return FootageRegistration(plate.reshape(frames.shape[1:3]), first_probes=THRESHOLD_SAMPLE_FRAMES)


def _say_registration_start(job: JobContext, registration: FootageRegistration) -> None:
    """One line: where the footage was found away from the plate, and that it is registered from there."""
    start = registration.started
    assert start is not None
    job.say(
        f"the camera moves ({start.agreed} of {start.probed} frames probed from frame {start.frame}"
        " sit away from the background): registering every frame from there"
    )
