"""The background-model step: fit the median or robust background and persist it as factors."""

from __future__ import annotations

import os
import time
from typing import Final

import dask.array as da
import distributed
import numpy as np
import numpy.typing as npt

from cluster.client import describe, worker_memory_limit
from pipelines.background_models import (
    FITTED_MODELS,
    GAIN_SAMPLE_FRAMES,
    PLATE_BLEND,
    PLATE_WINDOW_S,
    plate_windows,
    sample_plate,
    window_factors,
)
from pipelines.camera_motion import motion_of_shifts
from pipelines.frame_gains import GAIN_RULE, frame_gains
from pipelines.masks import (
    auto_threshold,
    sample_frames,
    threshold_map,
    threshold_sample_stride,
)
from pipelines.median_counts import (
    VALUE_COUNT_PIXELS,
    coarse_counts,
    fine_counts,
    median_bin,
    median_from_counts,
    median_in_windows,
    median_of_values,
    pixel_columns,
    value_counts,
    window_counts,
    window_starts,
)
from pipelines.planning import merged_chunk_limit, merged_frames_per_chunk
from pipelines.registration import MOVED_FRAMES_TO_REGISTER, blend_stretches, registered, shifts_against
from pipelines.steps.auto_threshold import THRESHOLD_SAMPLE_FRAMES
from pipelines.steps.context import JobContext, step_context
from pipelines.steps.recompute import recomputed_if_inconsistent
from pipelines.stopped_objects import COUNTED_EVERY, alternatives, swapped_pixels, values_in_window
from storage.errors import InvalidParameterError
from storage.factor_lookup import FactorsSummary, complete_factors
from storage.factors import StoredFactors, open_factors, write_factors
from storage.layout import FRAME_SHIFTS_ATTR
from storage.store import StoreLocation
from storage.video_array import StoredVideo, open_video
from storage.writer_lock import writer_lock

__all__ = ["fit_background", "stored_plate_window"]

PLATE_ROUNDS: Final = 4
"""Most times the registered sample plate is made (its frames measured against the plate
before, then moved back); fewer when their shifts settle (at most
:data:`SETTLED_FRAMES` of them changed).  Measured, frames whose shift changed in each
round: Video_003 shaken by 2 pixels 40 then 0, the 720p clip 13, 2, 0; a synthetic shake
of 3 pixels 24, 28, 23, 4, 2 (60 of its 64 frames moved after 4 rounds, 10 after 1); a
car park's slow pan 27, 28, 5, 8, 3."""
SETTLED_FRAMES: Final = 2
"""Of the sample plate's 64 frames, how many may change their shift in a round for the
rounds to stop: a median of 64 values hardly moves when 2 of them do."""
_PASSES = {"median": 1, "robust": 3}  # reads of the video, per model of FITTED_MODELS, beyond its sample
REGISTRATION_RULE = (
    "; in each plate's window where the camera moved (at least 2 of 24 sampled"
    " frames shifted against the window's first plate), each frame moved back by its"
    " whole-pixel shift against the plate of the first plate's frames moved back by theirs"
    " (measured again against it, up to 4 rounds, until at most 2 of 64 change);"
    " neighbouring plates that sit apart are not blended"
)
"""How a fitted background registers the frames of a camera that moved (:mod:`pipelines.registration`)."""
ROBUST_FIT = (
    f"median of the frames divided by their gains, then the gains against it ({GAIN_RULE});"
    " where an object stood longer than the ground was seen, the ground seen around it"
    " or, across a wide place, grown inward from its border" + REGISTRATION_RULE
)
"""How the robust model's factors were fitted, recorded with them: factors fitted
another way (the plain median times gains, before) are fitted again, not reused."""
_FITS = {"median": "exact temporal median" + REGISTRATION_RULE, "robust": ROBUST_FIT}


def fit_background(
    *,
    store: StoreLocation | str | os.PathLike[str] | StoredVideo,
    model: str,
    plate_window_s: float | None = None,
    force: bool = False,
    context: JobContext | None = None,
) -> StoredFactors:
    """Fit the ``median`` or ``robust`` background of the stored video; persist it as factors.

    The factors go to ``STORE/factors/<model>`` (rank 1 per window of
    :func:`pipelines.background_models.plate_windows`: per source video, and per
    ``plate_window_s`` seconds of a longer one, by default
    :data:`pipelines.background_models.PLATE_WINDOW_S`), with the model, the window and its
    passes over the video in their attributes.  Complete factors of the same model,
    window and video are reused unless ``force``.

    Raises
    ------
    InvalidParameterError
        An unknown model, ``svd`` (decompose fits that one), a window that is not a
        number of seconds > 0, or a colour video.

    Notes
    -----
    Reads 64 frames for the first guess of the plate, then the uint8 video once
    (median) or twice (robust), and once more the columns of the pixels whose median
    lies outside the window counted around that guess (:mod:`pipelines.median_counts`;
    0.003-0.4 % of the pixels on real footage; twice when more than 65,536 missed).  A counting task
    holds a group of consecutive chunks (grouped as the fused SVD groups them,
    :func:`pipelines.planning.merged_frames_per_chunk`), counts them one at a time
    (robust: through a uint8 copy of each, divided by its gains) into one (P, 18)
    uint32 partial; this process holds the plate and the gains.
    """
    if model not in FITTED_MODELS:
        raise InvalidParameterError(f"fit_background fits {', '.join(FITTED_MODELS)}, got model={model!r}")
    started = time.perf_counter()
    video = store if isinstance(store, StoredVideo) else open_video(store)
    if plate_window_s is None:
        plate_window_s = PLATE_WINDOW_S
    windows = plate_windows(video.segments, fps=video.fps, window_s=plate_window_s)  # checks the window
    with writer_lock(video.location, step=f"fit {model} background"):
        return _fit(
            video,
            model=model,
            windows=windows,
            plate_window_s=float(plate_window_s),
            force=force,
            context=context,
            started=started,
        )


def stored_plate_window(video: StoredVideo, *, model: str) -> float | None:
    """The plate window (seconds) of the complete ``model`` fit the store holds for ``video``.

    Only a fit this version would reuse counts (same model, fit rule and blend); None
    when there is none.  For a step that scores or shows the stored background as it
    is (``evaluate --models``, ``report --truth``): asking :func:`fit_background` for
    this window reuses the fit, where the default window would fit it again and
    replace a fit made with ``--plate-window``.
    """
    for summary in complete_factors(video.location, video_fingerprint=video.fingerprint):
        if _fitted_as_now(summary, model=model) and summary.plate_window_s is not None:
            return float(summary.plate_window_s)
    return None


def _fitted_as_now(summary: FactorsSummary, *, model: str) -> bool:
    """Whether stored factors are a ``model`` fit by this version's rule and blend (any window)."""
    return (
        summary.name == summary.method == model
        and summary.fit == _FITS.get(model)
        and summary.plate_blend == PLATE_BLEND
    )


def _fit(
    video: StoredVideo,
    *,
    model: str,
    windows: list[tuple[int, int]],
    plate_window_s: float,
    force: bool,
    context: JobContext | None,
    started: float,
) -> StoredFactors:
    """Reuse or fit and write the background; the writer lock is held."""
    if not force and any(
        _fitted_as_now(summary, model=model)
        and summary.plate_window_s == plate_window_s
        and summary.windows == windows
        for summary in complete_factors(video.location, video_fingerprint=video.fingerprint)
    ):
        return open_factors(video.location, model, expected_fingerprint=video.fingerprint)
    with step_context(context) as job:
        recomputed_if_inconsistent(
            lambda: _fit_and_write(
                job, video, model=model, windows=windows, plate_window_s=plate_window_s, started=started
            ),
            what=f"the {model} background",
            say=job.say,
        )
    return open_factors(video.location, model, expected_fingerprint=video.fingerprint)


def _fit_and_write(
    job: JobContext,
    video: StoredVideo,
    *,
    model: str,
    windows: list[tuple[int, int]],
    plate_window_s: float,
    started: float,
) -> None:
    """Fit the background of each window and write its factors (the writer lock is held).

    Raises :class:`storage.errors.InconsistentResultError`, having written nothing,
    when the counts do not add up.
    """
    client = job.computing_on(video.location)
    plates_of = (
        f", {len(windows)} plates of at most {plate_window_s:g} s"
        if len(windows) > len(video.segments)
        else ""
    )
    planned = f"{_PASSES[model]} read{'s' if _PASSES[model] != 1 else ''} of the video"
    job.say(f"fitting the {model} background ({planned}{plates_of})")
    plates, gains = [], []
    reads = 0  # of the video: the most any of its windows took
    held = job.frames_to_read(video)
    shifts = np.zeros((video.n_frames, 2), dtype=np.int64)  # each frame's, (0, 0) unless registered
    for number, (start, stop) in enumerate(windows):
        frames = held[start:stop]
        label = f"{model}" + (f", plate {number + 1} of {len(windows)}" if len(windows) > 1 else "")
        n_frames = stop - start
        per_task = merged_frames_per_chunk(
            video_chunk_frames=max(frames.chunks[0]),  # a segment may start inside a chunk
            n_video_chunks=len(frames.chunks[0]),
            frame_pixels=video.height * video.width,
            min_chunks=2 * max(sum(client.nthreads().values()), 1),
            max_chunk_bytes=merged_chunk_limit(worker_memory_limit(client)),
        )
        # the masks' threshold's frames, for the robust model's stopped objects: read meanwhile
        threshold_frames = _threshold_frames(job, video, frames) if model == "robust" else []
        first_plate = client.compute(sample_plate(frames))
        job.wait([first_plate], description=f"{label}: sample plate", frames=None)
        guess = np.asarray(first_plate.result())
        segment_reads = 1
        found = _registration(client, job, frames, guess, label=label)
        measuring: list[da.Array] = []  # the frames' shifts, when measured in pass 1
        if found is not None:  # the camera moved: the fit goes on with the frames moved back
            lazy_shifts, guess = found
            frames, measuring = registered(frames, lazy_shifts), [lazy_shifts]
        starts = window_starts(guess)
        divide_by = None
        if model == "robust":
            # one read: each chunk's shifts, its gains, and its counts divided by them
            lazy_gains = frame_gains(frames, guess)
            lazy_counts = window_counts(frames, starts, gains=lazy_gains, frames_per_task=per_task)
            measured, counted, *shifts_measured = client.compute([lazy_gains, lazy_counts, *measuring])
            job.wait([measured, counted, *shifts_measured], description=f"{label}: pass 1", frames=n_frames)
            divide_by = np.asarray(measured.result(), dtype=np.float64)
        else:
            counted, *shifts_measured = client.compute(
                [window_counts(frames, starts, frames_per_task=per_task), *measuring]
            )
            job.wait([counted, *shifts_measured], description=f"{label}: pass 1", frames=n_frames)
        window_rows = np.asarray(counted.result())
        if shifts_measured:  # later passes move the frames back by the shifts as measured
            shifts[start:stop] = np.asarray(shifts_measured[0].result(), dtype=np.int64)
            frames = registered(held[start:stop], shifts[start:stop])
            threshold_frames = _threshold_frames(job, video, frames) if model == "robust" else []
        plate, missed = median_in_windows(window_rows, starts, n_frames=n_frames)
        if missed.any():
            pixels = np.flatnonzero(missed)
            plate[pixels], more_reads = _median_of_pixels(
                client, job, frames, pixels, gains=divide_by, frames_per_task=per_task, label=label
            )
            segment_reads += more_reads
        if model == "robust":
            gains.append(_gains(client, job, frames, plate, f"{label}: gains against the plate"))
            plate, more_reads = _without_stopped_objects(
                client,
                job,
                frames,
                plate,
                gains[-1],
                threshold_frames=threshold_frames,
                frames_per_task=per_task,
                label=label,
            )
            segment_reads += 1 + more_reads
        else:
            gains.append(np.ones(n_frames))
        plates.append(plate)
        reads = max(reads, segment_reads)
    stretches = blend_stretches(plates, windows, sources=video.segments, shape=(video.height, video.width))
    if len(stretches) > len(video.segments):
        job.say(
            f"{model}: the camera moved between plates at {len(stretches) - len(video.segments)} of the"
            " windows' edges: the plates on either side are not blended there"
        )
    factors = window_factors(plates, gains, windows, sources=stretches, n_frames=video.n_frames)
    write_factors(
        video.location,
        name=model,
        U=factors.U,
        s=factors.s,
        Vt=factors.Vt,
        attrs={
            "method": model,
            "model": model,
            "passes": reads,
            "fit": _FITS[model],
            "plate_window_s": plate_window_s,
            "plate_blend": PLATE_BLEND,
            "windows": [list(window) for window in windows],
            "video_fingerprint": video.fingerprint,
            "wall_time_s": round(time.perf_counter() - started, 3),
            "cluster": describe(client),
            **({FRAME_SHIFTS_ATTR: shifts.tolist()} if shifts.any() else {}),
        },
        overwrite=True,
    )


def _registration(
    client: distributed.Client, job: JobContext, frames: da.Array, guess: npt.NDArray[np.uint8], *, label: str
) -> tuple[da.Array, npt.NDArray[np.uint8]] | None:
    """Each frame's shift and the plate of the frames moved back, when the camera moved; else None.

    The :data:`~pipelines.steps.auto_threshold.THRESHOLD_SAMPLE_FRAMES` frames the
    threshold samples are measured against ``guess`` (the plate of the window's raw
    frames); when at least :data:`~pipelines.registration.MOVED_FRAMES_TO_REGISTER` of
    them moved, so are the frames of the sample plate, which is made again from them moved
    back, up to :data:`PLATE_ROUNDS` times until their shifts settle.  Returns every
    frame's shift against the last plate, lazy (the fit's first pass measures them as it
    reads the frames), and that plate.  Memory: the sample plate's frames (64 of them)
    are held by the workers while the rounds last.
    """
    n_frames = int(frames.shape[0])
    picked = sample_frames(n_frames, THRESHOLD_SAMPLE_FRAMES)
    motion = motion_of_shifts(job.fetch(shifts_against(frames[picked], guess))[0])
    if motion.moved_frames < MOVED_FRAMES_TO_REGISTER:
        return None
    job.say(
        f"{label}: the camera moves ({motion.moved_frames} of {motion.sampled} sampled frames, up to"
        f" {motion.largest_shift_px:.0f} pixels): registering every frame to the plate"
    )
    # the plate's own frames (held by the workers: read once, not once a round), measured
    # against it and it made again from them moved back until their shifts settle: each
    # round's plate is sharper than the one before
    plate_frames = client.persist(frames[sample_frames(n_frames, GAIN_SAMPLE_FRAMES)])
    plate, previous = guess, None
    for _ in range(PLATE_ROUNDS):
        found = np.asarray(job.fetch(shifts_against(plate_frames, plate))[0], dtype=np.int64)
        if previous is not None and np.count_nonzero((found != previous).any(axis=1)) <= SETTLED_FRAMES:
            break
        moved_plate = client.compute(sample_plate(registered(plate_frames, found), n_sample=len(found)))
        job.wait([moved_plate], description=f"{label}: registered sample plate", frames=None)
        plate, previous = np.asarray(moved_plate.result()), found
    return shifts_against(frames, plate), plate


def _median_of_pixels(
    client: distributed.Client,
    job: JobContext,
    frames: da.Array,
    pixels: npt.NDArray[np.intp],
    *,
    gains: npt.NDArray[np.float64] | None,
    frames_per_task: int | None,
    label: str,
) -> tuple[npt.NDArray[np.uint8], int]:
    """The exact medians of ``pixels`` (m,), and the reads of their columns it took.

    One read counting each value when they are few (:data:`VALUE_COUNT_PIXELS`), else
    two: coarse, then fine counts.
    """
    columns = pixel_columns(frames, pixels)
    n_frames = int(frames.shape[0])
    description = f"{label}: {len(pixels)} pixels outside their window"
    if len(pixels) <= VALUE_COUNT_PIXELS:
        counted = client.compute(value_counts(columns, gains=gains, frames_per_task=frames_per_task))
        job.wait([counted], description=description, frames=n_frames)
        return median_of_values(np.asarray(counted.result()), n_frames=n_frames), 1
    counted = client.compute(coarse_counts(columns, gains=gains, frames_per_task=frames_per_task))
    job.wait([counted], description=f"{description}, 1/2", frames=n_frames)
    coarse = np.asarray(counted.result())
    counted = client.compute(
        fine_counts(
            columns, median_bin(coarse, n_frames=n_frames), gains=gains, frames_per_task=frames_per_task
        )
    )
    job.wait([counted], description=f"{description}, 2/2", frames=n_frames)
    return median_from_counts(coarse, np.asarray(counted.result()), n_frames=n_frames), 2


def _threshold_frames(job: JobContext, video: StoredVideo, frames: da.Array) -> list[distributed.Future]:
    """Futures of the frames the masks' ``auto`` threshold samples, and of their noise scale.

    As ``separate`` measures them (:func:`pipelines.steps.auto_threshold.threshold_sample`;
    the noise scale is the context's, which ``separate`` then reuses); submitted, not
    waited for.
    """
    client = job.client()
    sampled = frames[sample_frames(int(frames.shape[0]), THRESHOLD_SAMPLE_FRAMES)]
    noise = job.noise_scale(video, frames)
    return [client.compute(sampled), *([] if noise is None else [noise])]


def _without_stopped_objects(
    client: distributed.Client,
    job: JobContext,
    frames: da.Array,
    plate: npt.NDArray[np.uint8],
    gains: npt.NDArray[np.float64],
    *,
    threshold_frames: list[distributed.Future],
    frames_per_task: int | None,
    label: str,
) -> tuple[npt.NDArray[np.uint8], int]:
    """``plate`` with the ground back where an object stood longer (:mod:`pipelines.stopped_objects`).

    One read counts the coarse bins of every
    :data:`~pipelines.stopped_objects.COUNTED_EVERY`-th frame divided by its gain (a
    computation of its own: beside the first pass's, the chunks waited in memory for
    their second reader, and counted in the first pass's tasks they made it slower);
    ``threshold_frames``, the futures of :func:`_threshold_frames`, give the masks'
    ``auto`` threshold against this plate.  When some pixels take their alternative,
    one more read of their columns gives its exact value.  Returns the plate and the
    reads it took (1 or 2).
    """
    height, width = int(frames.shape[1]), int(frames.shape[2])
    flat_plate = np.asarray(plate, dtype=np.float32).reshape(-1)
    every = slice(None, None, COUNTED_EVERY)
    counted = client.compute(
        coarse_counts(frames[every], gains=gains[every], frames_per_task=frames_per_task)
    )
    job.wait([counted], description=f"{label}: where objects stood", frames=int(frames.shape[0]))
    coarse = np.asarray(counted.result())
    n_counted = len(range(*every.indices(int(frames.shape[0]))))
    picked = sample_frames(int(frames.shape[0]), THRESHOLD_SAMPLE_FRAMES)
    sample, *noise = (np.asarray(values) for values in job.gather(threshold_frames))
    # only the values auto_threshold takes (a stride of them), each minus its background
    taken = np.arange(0, sample.size, threshold_sample_stride(sample.size))
    frame_of, pixel_of = np.divmod(taken, flat_plate.size)
    residual = sample.reshape(-1)[taken] - (gains[picked][frame_of] * flat_plate[pixel_of]).astype(np.float32)
    threshold = float(auto_threshold(residual))
    levels = threshold_map(threshold, noise[0]).reshape(-1) if noise else np.float32(threshold)
    found = alternatives(coarse, flat_plate, levels)
    swapped = swapped_pixels(
        flat_plate.reshape(height, width), found, n_counted=n_counted, threshold=threshold
    )
    pixels = np.flatnonzero(swapped)
    if pixels.size == 0:
        return plate, 1
    job.say(f"{label}: the ground back on {pixels.size / swapped.size:.2%} of the plate, where objects stood")
    pixel_levels = np.broadcast_to(levels, flat_plate.shape)[pixels]
    if pixels.size > VALUE_COUNT_PIXELS:  # too many for exact counts: the coarse bins' value
        new_values = found.value[pixels]
        reads = 1
    else:
        counted = client.compute(
            value_counts(pixel_columns(frames, pixels), gains=gains, frames_per_task=frames_per_task)
        )
        job.wait(
            [counted], description=f"{label}: the ground where objects stood", frames=int(frames.shape[0])
        )
        exact = values_in_window(
            np.asarray(counted.result()),
            first_bin=found.first_bin[pixels],
            plate=flat_plate[pixels],
            threshold=pixel_levels,
        )
        new_values = np.where(np.isnan(exact), found.value[pixels], exact)
        reads = 2
    repaired = np.array(plate, dtype=np.uint8, copy=True).reshape(-1)
    repaired[pixels] = np.clip(np.rint(new_values), 0, 255).astype(np.uint8)
    return repaired.reshape(plate.shape), reads


def _gains(
    client: distributed.Client, job: JobContext, frames: da.Array, plate: npt.ArrayLike, description: str
) -> npt.NDArray[np.float64]:
    """The frames' gains against ``plate`` (one read), computed with progress."""
    measured = client.compute(frame_gains(frames, np.asarray(plate)))
    job.wait([measured], description=description, frames=int(frames.shape[0]))
    return np.asarray(measured.result(), dtype=np.float64)
