"""The evaluate step: the stored masks (and OpenCV's subtractors) against ground truth."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt

from pipelines.background_models import BACKGROUND_MODELS
from pipelines.baselines import run_baseline
from pipelines.scores import Scores, cdnet_scores
from pipelines.steps.context import JobContext, step_context
from pipelines.steps.model_masks import model_masks
from pipelines.steps.separate import outdated_rules
from storage.derived import SeparationRecord, StoredArray, open_derived
from storage.errors import (
    FingerprintMismatchError,
    InvalidParameterError,
    SourceNotFoundError,
    SourceNotReadableError,
    StoreIncompleteError,
    StoreNotFoundError,
    TruthMismatchError,
)
from storage.factors import open_factors
from storage.layout import MASKS_ARRAY
from storage.store import StoreLocation
from storage.truth import read_cdnet_truth, read_truth_masks
from storage.video_array import StoredVideo, open_video
from storage.video_decoder import DecodeOptions, SourceInfo, decode_blocks, probe_video

__all__ = ["BASELINES", "BASELINE_FRAMES", "TRUTH_FORMATS", "evaluate", "refuse_unreadable_truth"]

BASELINES = ("mog2", "knn")
"""OpenCV background subtractors :func:`evaluate` can score beside vidsvd."""

TRUTH_FORMATS = ("cdnet", "masks")
"""Layouts of ground truth :func:`evaluate` reads."""


BASELINE_FRAMES = ("color", "stored")
"""What the baselines can be fed (see :func:`evaluate`)."""

_COLOR_NDIM = 4
_COLOR_BLOCK_FRAMES = 32


def evaluate(
    *,
    store: StoreLocation | str | os.PathLike[str],
    truth: str | os.PathLike[str],
    truth_format: str = "masks",
    frame_map: str | os.PathLike[str] | None = None,
    baselines: Sequence[str] = (),
    baseline_frames: str = "color",
    models: Sequence[str] = (),
    shadows: bool | None = None,
    context: JobContext | None = None,
) -> dict[str, dict[str, Any]]:
    """Score ``STORE/masks`` (and each background model) against ground truth, CDnet 2014 metrics.

    Parameters
    ----------
    truth : path
        ``masks`` format: a folder of binary images and a CSV (``frame_map``, or the
        folder's own ``frame_map.csv``) mapping each image to its frame.  ``cdnet``
        format: a CDnet 2014 video folder (``groundtruth/`` and ``temporalROI.txt``).
    baselines : sequence of {"mog2", "knn"}
        OpenCV background subtractors run over the whole video and scored the same
        way (needs the ``baselines`` extra).
    baseline_frames : {"color", "stored"}
        What they see: ``color``, the source videos decoded again in colour at the
        store's frame rate and size (what a user would feed OpenCV, which uses the
        colour channels; each source must still be where ingest read it, with the
        sha256 it had), or ``stored``, the store's own (gray) frames.
    models : sequence of {"robust", "median", "svd"}
        Also score these background models side by side: each one's masks of the
        truth's frames, made as ``separate --model`` would make them with the ``auto``
        threshold, in memory (:func:`pipelines.steps.model_masks.model_masks`; the
        robust and median models are fitted and stored when the store lacks them).
        The stored masks are scored too when there are any.
    shadows : bool, optional
        The models' masks with cast shadows taken out (True), as ``separate`` makes
        them by default, or kept (False, as ``separate --no-shadows``).  None
        (default): as the stored masks were made, so that every row is scored by one
        rule (True when the store has no masks); the stored masks are scored as they
        were made.
    context : JobContext, optional
        Where the models compute (default: the embedded cluster); the stored masks
        and the baselines are scored in this process.

    Returns
    -------
    dict
        Method name ("vidsvd" for the stored masks, "vidsvd-robust", "vidsvd-median",
        "vidsvd-svd", "mog2", "knn") to its scores: recall, specificity, FPR, FNR,
        PWC, precision, F-measure, and the frame count; a model's row also gives
        ``fit_s``, the seconds its factors took when they were computed.

    Raises
    ------
    InvalidParameterError
        An unknown ``truth_format``, baseline or model.
    TruthMismatchError
        The truth names frames the store does not have.

    Notes
    -----
    Memory: the scored frames' masks and truth (per model, one at a time); the
    baselines stream the stored video one chunk at a time.
    """
    if truth_format not in TRUTH_FORMATS:
        raise InvalidParameterError(f"truth_format must be cdnet or masks, got {truth_format!r}")
    if baseline_frames not in BASELINE_FRAMES:
        raise InvalidParameterError(f"--baseline-frames must be color or stored, got {baseline_frames!r}")
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise InvalidParameterError(f"baselines are mog2 and/or knn, got {', '.join(unknown)}")
    unknown = sorted(set(models) - set(BACKGROUND_MODELS))
    if unknown:
        raise InvalidParameterError(
            f"models are {', '.join(BACKGROUND_MODELS)}, got {', '.join(repr(m) for m in unknown)}"
        )
    video = open_video(store)
    if truth_format == "cdnet":
        found = read_cdnet_truth(truth)
        truth_frames = [(frame, found.load(frame)) for frame in found.frames if frame < video.n_frames]
    else:
        truth_frames = read_truth_masks(truth, frame_map=frame_map, shape=(video.height, video.width))
    outside = [frame for frame, _ in truth_frames if frame >= video.n_frames]
    if outside:
        raise TruthMismatchError(
            f"ground truth names frame {outside[0]} but the store has {video.n_frames} frames; "
            "check the frame map and the ingest's --fps"
        )
    wanted = [frame for frame, _ in truth_frames]
    results: dict[str, dict[str, Any]] = {}
    stored_masks = _stored_masks(video, models=models)
    if shadows is None:
        shadows = stored_masks is None or stored_masks.record.shadows
    outdated = "" if stored_masks is None else _outdated(video, stored_masks.record)
    if stored_masks is not None:
        predicted = np.asarray(stored_masks.data[wanted].compute(scheduler="threads")) > 0
        results["vidsvd"] = _scores_row(predicted, truth_frames)
    with step_context(context) as job:
        if outdated:
            job.warn_once(
                ("outdated masks", str(video.location)),
                f"the stored masks were made {outdated}: the row 'vidsvd' scores them as they are;"
                f" `vidsvd separate --store {video.location}` makes them as separate does now",
            )
        for model in dict.fromkeys(models):
            scored = model_masks(video, model=model, frames=wanted, context=job, shadows=shadows)
            results[f"vidsvd-{model}"] = {**_scores_row(scored.masks, truth_frames), "fit_s": scored.fit_s}
    # after a cluster of this call's own has closed: the baselines run in this process
    return _with_baselines(
        results,
        video,
        baselines=baselines,
        baseline_frames=baseline_frames,
        job=job,
        truth_frames=truth_frames,
    )


def refuse_unreadable_truth(
    truth: str | os.PathLike[str] | None,
    *,
    truth_format: str,
    frame_map: str | os.PathLike[str] | None = None,
) -> None:
    """Refuse, before a job's work, a ground truth :func:`evaluate` could not read (None: nothing to check).

    Reads what :func:`evaluate` reads first: a CDnet folder's index, or a masks
    folder's frame map and masks (sizes are checked against the video later).

    Raises
    ------
    InvalidParameterError, SourceNotFoundError, SourceNotReadableError
        An unknown layout, or a truth that is missing or unreadable, in one line.
    """
    if truth is None:
        return
    if truth_format not in TRUTH_FORMATS:
        raise InvalidParameterError(f"truth_format must be cdnet or masks, got {truth_format!r}")
    if truth_format == "cdnet":
        read_cdnet_truth(truth)
    else:
        read_truth_masks(truth, frame_map=frame_map)


def _stored_masks(video: StoredVideo, *, models: Sequence[str]) -> StoredArray | None:
    """The stored masks; None when there are none and models are scored instead."""
    try:
        return open_derived(video.location, MASKS_ARRAY)
    except StoreNotFoundError:
        if models:
            return None
        raise


def _outdated(video: StoredVideo, record: SeparationRecord) -> str:
    """How the stored masks differ from what ``separate`` makes now, in words; "" when they do not.

    Raises :class:`storage.errors.FingerprintMismatchError` when they are of another video.
    """
    if record.video_fingerprint != video.fingerprint:
        raise FingerprintMismatchError(
            f"the stored masks in {video.location} are of another video than its frames;"
            f" run `vidsvd separate --store {video.location}` again"
        )
    try:
        factors_id = open_factors(video.location, record.factors).factors_id
    except (StoreNotFoundError, StoreIncompleteError):
        factors_id = ""
    replaced = f"with factors '{record.factors}' that have been replaced or removed since"
    return ", ".join(([] if record.factors_id == factors_id else [replaced]) + outdated_rules(record))


def _with_baselines(
    results: dict[str, dict[str, Any]],
    video: StoredVideo,
    *,
    baselines: Sequence[str],
    baseline_frames: str,
    job: JobContext,
    truth_frames: Sequence[tuple[int, npt.NDArray[np.uint8]]],
) -> dict[str, dict[str, Any]]:
    """``results`` with a row per OpenCV baseline, run over the whole video in this process."""
    wanted = [frame for frame, _ in truth_frames]
    for name in baselines:
        job.say(f"running the {name} baseline over {video.n_frames} {baseline_frames} frames")
        frames = _color_frames(video) if baseline_frames == "color" else _stored_frames(video)
        found_masks = run_baseline(cast(Literal["mog2", "knn"], name), frames, wanted_frames=set(wanted))
        results[name] = _scores_row(np.stack([found_masks[f] for f in wanted]), truth_frames)
    return results


def _scores_row(
    predicted: npt.NDArray[np.bool_], truth_frames: Sequence[tuple[int, npt.NDArray[np.uint8]]]
) -> dict[str, Any]:
    total = sum(
        (
            cdnet_scores(mask, truth_mask)
            for mask, (_, truth_mask) in zip(predicted, truth_frames, strict=True)
        ),
        Scores(),
    )
    return {**total.as_dict(), "frames": len(truth_frames)}


def _color_frames(video: StoredVideo) -> Iterator[npt.NDArray[np.uint8]]:
    """The sources decoded again in colour, as ingest decoded them in gray: frame for frame.

    The same ffmpeg filters (rate, then size) run with an RGB output instead of gray,
    so frame ``t`` here is frame ``t`` of the store.  Each source must be the file
    ingest read (size and sha256, as a resume checks).  One block of frames in memory.
    """
    if video.frames.ndim == _COLOR_NDIM:
        yield from _stored_frames(video)  # stored in colour already
        return
    options = DecodeOptions(width=video.width, height=video.height, fps=video.ingest_fps, color=True)
    for source in video.sources:
        path = Path(source.path)
        info = _unchanged_source(path, size_bytes=source.size_bytes, sha256=source.sha256)
        if info is None:
            raise SourceNotFoundError(
                f"the colour baselines decode {path} again, and it is gone or changed since the ingest;"
                " restore it, or pass --baseline-frames stored"
            )
        for block in decode_blocks(info, options, block_frames=_COLOR_BLOCK_FRAMES):
            yield from block


def _unchanged_source(path: Path, *, size_bytes: int, sha256: str) -> SourceInfo | None:
    """The source at ``path`` when it is still the one ingest read (size, sha256), else None."""
    if not path.exists():
        return None
    try:
        info = probe_video(path)
    except SourceNotReadableError:
        return None
    return info if info.same_content(size_bytes=size_bytes, sha256=sha256) else None


def _stored_frames(video: StoredVideo) -> Iterator[npt.NDArray[np.uint8]]:
    """The stored frames, a chunk at a time, read in this process (for OpenCV's baselines).

    Read by local threads, never by a cluster that may hold the same frames' keys.
    """
    step = int(video.frames.chunks[0][0])
    for start in range(0, video.n_frames, step):
        yield from np.asarray(video.frames[start : start + step].compute(scheduler="threads"))
