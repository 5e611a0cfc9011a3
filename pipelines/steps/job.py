"""The main job: ingest, decompose, separate and report, on one cluster."""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from pipelines.background_models import chosen_model
from pipelines.decompose import SvdParameters
from pipelines.masks import AUTO_THRESHOLD_RULE
from pipelines.steps.background import fit_background
from pipelines.steps.context import JobContext, step_context
from pipelines.steps.decompose import decompose
from pipelines.steps.ingest import ingest
from pipelines.steps.separate import (
    outdated_rules,
    refuse_masks_video_without_videos,
    refuse_plate_window_with_svd,
    separate,
)
from storage.derived import SeparationRecord, open_derived, read_separation
from storage.errors import InvalidParameterError, StoreExistsError, StoreIncompleteError, StoreNotFoundError
from storage.factors import open_factors
from storage.layout import FOREGROUND_ARRAY
from storage.output_folder import OutputFolder
from storage.store import StoreLocation, as_location, create_parent_folder, store_exists
from storage.video_array import open_video
from storage.video_identity import video_difference
from storage.video_probe import probe_video

__all__ = ["RunSummary", "run"]

_REPORT_STEP: Final = "pipelines.steps.report"
"""The report's module: it imports matplotlib, which nothing before the report needs,
so ``run`` imports it while the cluster computes (:func:`_import_meanwhile`)."""


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """Where the main job put things, what each step did and how long it took."""

    store: str
    out: str
    steps: dict[str, str]
    timings: dict[str, float]


def run(
    videos: Sequence[str | os.PathLike[str]],
    *,
    out: str | os.PathLike[str],
    parameters: SvdParameters,
    rank_within_frames: bool = False,
    store: StoreLocation | str | os.PathLike[str] | None = None,
    fps: float | None = None,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    separate_rank: int | None = None,
    threshold: float | None = None,
    report_ranks: Sequence[int] | None = None,
    model: str | None = None,
    plate_window_s: float | None = None,
    name: str | None = None,
    force: bool = False,
    overwrite: bool = False,
    keep_foreground: bool = False,
    masks_video: bool = False,
    make_videos: bool = True,
    shadows: bool = True,
    truth: str | os.PathLike[str] | None = None,
    truth_format: str = "masks",
    frame_map: str | os.PathLike[str] | None = None,
    context: JobContext | None = None,
) -> RunSummary:
    """The main job: ingest, decompose, separate, report, into ``out``.

    The store is ``store`` (a path or fsspec URL such as ``s3://bucket/job.zarr``),
    by default ``out/store.zarr``; images, videos and reports go to the local folder
    ``out``.  Each step is skipped when its complete output exists already, so
    rerunning after a crash or Ctrl-C continues where the job stopped (an
    interrupted ingest resumes).  ``model`` chooses the background of the
    separation (see :func:`pipelines.steps.separate.separate`; ``robust`` unless
    ``separate_rank`` is given, which implies ``svd``; ``plate_window_s`` as there);
    the report measures the SVD
    (factors ``name``, by default ``METHOD-kRANK``).  ``rank_within_frames`` lowers
    the SVD's rank to the frames of a video that has fewer (for a default rank, which
    the user did not ask for); otherwise such a rank is refused.  ``force`` recomputes the SVD
    even when factors of that name exist; ``overwrite`` starts again from a fresh
    store, whatever the store held.  ``keep_foreground`` also stores the int16
    foreground and ``masks_video`` writes ``masks.mp4``; ``make_videos=False`` writes
    no video; ``shadows`` (the default) takes cast shadows out of the masks (see
    :func:`pipelines.steps.separate.separate`).  With ``truth`` (in
    ``truth_format``, with ``frame_map``: see :func:`pipelines.steps.evaluate.evaluate`)
    the report also scores the masks and each model against it, and is made again at
    every run (a truth is not recorded, so a report scored on one is never reused).
    One Client serves every step.  With an existing scheduler, its workers must see
    the store: that is checked before the ingest (a local store's folder is created
    first), so a store they cannot reach fails in seconds rather than after the
    ingest.
    """
    model = chosen_model(model, svd_options_given=separate_rank is not None)
    refuse_plate_window_with_svd(model, plate_window_s=plate_window_s)
    if truth is not None:
        from pipelines.steps.evaluate import refuse_unreadable_truth  # only a job scored on a truth needs it

        refuse_unreadable_truth(truth, truth_format=truth_format, frame_map=frame_map)
    refuse_masks_video_without_videos(masks_video=masks_video, make_videos=make_videos)
    folder = OutputFolder.at(out)
    folder.refuse_a_file()  # a file as --out fails first, in its own words
    location = as_location(store) if store is not None else StoreLocation(url=str(folder.default_store))
    steps: dict[str, str] = {}
    timings: dict[str, float] = {}
    with step_context(context) as job:
        if job.cluster.scheduler:
            create_parent_folder(location)
            job.require_workers_see(location, must_exist=False)
        started = time.perf_counter()
        state = _video_state(location)
        if (overwrite or state != "stored") and not rank_within_frames:
            _refuse_rank_beyond_video(videos, rank=parameters.rank, fps=fps)
        if overwrite or state != "stored":
            job.warm_up()  # the ingest runs here; the cluster starts meanwhile for the SVD after it
        if overwrite and state != "absent":
            ingest(videos, store=location, fps=fps, scale=scale, size=size, overwrite=True, context=job)
            steps["ingest"] = "done (--overwrite)"
        elif state == "stored":
            difference = video_difference(open_video(location), videos, fps=fps, scale=scale, size=size)
            if difference is not None:
                raise StoreExistsError(
                    f"{location} holds another video than this job asks for ({difference}); "
                    "pass --overwrite to replace it, or choose another --out or --store"
                )
            steps["ingest"] = "skipped (complete)"
        else:
            ingest(
                videos,
                store=location,
                fps=fps,
                scale=scale,
                size=size,
                resume=state == "incomplete",
                context=job,
            )
            steps["ingest"] = "resumed" if state == "incomplete" else "done"
        timings["ingest_s"] = time.perf_counter() - started
        _import_meanwhile(_REPORT_STEP)

        started = time.perf_counter()
        n_frames = open_video(location).n_frames
        if rank_within_frames and parameters.rank > n_frames:
            job.say(f"the video has {n_frames} frames: the SVD's rank is {n_frames}, not {parameters.rank}")
            parameters = replace(parameters, rank=n_frames)
        decomposed = decompose(store=location, parameters=parameters, name=name, force=force, context=job)
        steps["decompose"] = f"reused {decomposed.name}" if decomposed.reused else f"done ({decomposed.name})"
        timings["decompose_s"] = time.perf_counter() - started

        started = time.perf_counter()
        if model != "svd":
            # stored background factors of an older fit are fitted again here, so that their
            # new id, not the stale one, decides whether the separation is current
            fit_background(store=location, model=model, plate_window_s=plate_window_s, context=job)
        done = read_separation(location)
        background = decomposed.name if model == "svd" else model
        background_id = _factors_id(location, background)
        if (
            done is not None
            and done.complete
            and done.factors == background
            and done.factors_id == background_id != ""
            and (separate_rank is None or done.rank == separate_rank)
            and done.threshold_rule == (AUTO_THRESHOLD_RULE if threshold is None else "given")
            and done.shadows == shadows
            and not outdated_rules(done)
            and (threshold is None or done.threshold == threshold)
            and (not keep_foreground or _foreground_of(location, done))
            and _folder_shows(folder, done, videos=make_videos)
            and (not masks_video or folder.masks_mp4.exists())
        ):
            steps["separate"] = "skipped (complete)"
        else:
            separate(
                store=location,
                out=folder.path,
                factors=decomposed.name if model == "svd" else None,
                rank=separate_rank if model == "svd" else None,
                threshold=threshold,
                model=model,
                plate_window_s=plate_window_s,
                keep_foreground=keep_foreground,
                masks_video=masks_video,
                make_videos=make_videos,
                shadows=shadows,
                context=job,
            )
            steps["separate"] = "done"
        timings["separate_s"] = time.perf_counter() - started

        started = time.perf_counter()
        from pipelines.steps.report import report, report_is_current  # imported meanwhile

        if (
            truth is None
            and steps["separate"].startswith("skipped")
            and report_is_current(
                folder,
                factors_id=_factors_id(location, decomposed.name),
                ranks=report_ranks,
                video=open_video(location),
            )
        ):
            steps["report"] = "skipped (complete)"
        else:
            report(
                store=location,
                out=folder.path,
                ranks=report_ranks,
                factors=decomposed.name,
                truth=truth,
                truth_format=truth_format,
                frame_map=frame_map,
                context=job,
            )
            steps["report"] = "done"
        timings["report_s"] = time.perf_counter() - started
    return RunSummary(store=str(location), out=str(folder.path), steps=steps, timings=timings)


def _import_meanwhile(module: str) -> None:
    """Import ``module`` in a thread of its own, while the job goes on.

    For a module the job needs later, whose import would otherwise hold the job up
    there: it runs while the job's thread waits on the cluster, on a core the
    cluster leaves idle.  Importing it for use later waits for this import to finish
    (Python's import lock); an import that failed here fails there again, with its
    own error.  Not a daemon thread: the process never exits in the middle of it.
    """

    def load() -> None:
        with contextlib.suppress(Exception):  # raised again where the module is used
            importlib.import_module(module)

    threading.Thread(target=load, name="vidsvd-import-ahead").start()


def _refuse_rank_beyond_video(
    videos: Sequence[str | os.PathLike[str]], *, rank: int, fps: float | None
) -> None:
    """Refuse, before ingesting, a rank the videos' headers show they cannot have.

    The frame count is estimated from each header (duration x frame rate, the higher
    of the two rates a header gives), which is exact for constant-rate files and can
    be off by a frame or two otherwise, so a
    rank is refused here only when it exceeds the estimate by more than a tenth (at
    least one frame); the decomposition checks the exact count after the ingest.
    """
    estimate = sum(probe_video(video).most_frames(fps) for video in videos)
    if estimate > 0 and rank > estimate + max(1, estimate // 10):
        at = "" if fps is None else f" at --fps {fps:g}"
        raise InvalidParameterError(
            f"--rank {rank} needs at least {rank} frames, and the video gives about {estimate}{at};"
            f" pass --rank {estimate} or less"
        )


def _folder_shows(folder: OutputFolder, separation: SeparationRecord, *, videos: bool) -> bool:
    """True when the folder shows this very separation (not a killed one's predecessor).

    With ``videos``, its videos too: a separation made without them is made again.
    """
    shown = folder.shown_separation(separation.as_attrs())
    return shown is not None and (not videos or folder.compare_mp4.exists())


def _foreground_of(location: StoreLocation, separation: SeparationRecord) -> bool:
    """True when the store holds a complete foreground of this very separation."""
    try:
        stored = open_derived(location, FOREGROUND_ARRAY).record
    except (StoreNotFoundError, StoreIncompleteError):
        return False
    return (stored.factors_id, stored.threshold) == (separation.factors_id, separation.threshold)


def _factors_id(location: StoreLocation, name: str) -> str:
    """The identity of the complete factors ``name``, "" when there are none yet."""
    try:
        return open_factors(location, name).factors_id
    except (StoreNotFoundError, StoreIncompleteError):
        return ""


def _video_state(store: StoreLocation) -> str:
    """``absent``, ``incomplete`` or ``stored`` for the video of a job's store."""
    if not store_exists(store):
        return "absent"
    try:
        open_video(store)
    except StoreIncompleteError:
        return "incomplete"
    except StoreNotFoundError:
        return "absent"
    return "stored"
