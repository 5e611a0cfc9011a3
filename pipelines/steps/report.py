"""The report step: compression and reconstruction quality per rank, spectrum and components."""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import numpy.typing as npt
from distributed import Future, futures_of

from pipelines.activity import (
    MOSTLY_FOREGROUND_SHARE,
    activity_csv,
    busiest_frames,
    foreground_fraction,
    mostly_foreground,
    pixel_foreground_share,
    unseen_background_warning,
)
from pipelines.background_models import FITTED_MODELS, shown_windows, window_label
from pipelines.images import background_png, components_png, image_png
from pipelines.matrix import video_columns
from pipelines.metrics import cumulative_energy, rank_table, squared_residuals
from pipelines.plots import activity_png, energy_png, foreground_share_png, spectrum_png
from pipelines.render import label_panels
from pipelines.report_html import render_report_html
from pipelines.separate import background_images
from pipelines.steps.context import JobContext, step_context
from pipelines.steps.evaluate import TRUTH_FORMATS, evaluate, refuse_unreadable_truth
from pipelines.steps.factor_choice import choose_factors, finite_flags, refuse_non_finite
from storage.derived import SeparationRecord, open_derived, read_separation, write_file_atomic
from storage.errors import InvalidParameterError, StoreDamagedError
from storage.factor_lookup import complete_factors
from storage.factors import StoredFactors, open_factors
from storage.layout import MASKS_ARRAY
from storage.output_folder import OutputFolder
from storage.store import StoreLocation, stored_bytes_by_array
from storage.video_array import StoredVideo, open_video

__all__ = ["DEFAULT_REPORT_RANKS", "report", "report_is_current"]

DEFAULT_REPORT_RANKS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 700)
"""Ranks measured by default (those up to the factors' rank, plus that rank)."""

_COMPONENT_IMAGES = 8
"""Columns of U shown as images."""

_PLATE_IMAGES = 12
"""Most plates of a long video's windows the report shows, spread over the video."""


def report(
    *,
    store: StoreLocation | str | os.PathLike[str],
    out: str | os.PathLike[str],
    ranks: Sequence[int] | None = None,
    factors: str | None = None,
    truth: str | os.PathLike[str] | None = None,
    truth_format: str = "masks",
    frame_map: str | os.PathLike[str] | None = None,
    context: JobContext | None = None,
) -> dict[str, Any]:
    """Compression and reconstruction quality per rank, spectrum and components.

    For each rank k (default: those of :data:`DEFAULT_REPORT_RANKS` up to the
    factors' rank, plus that rank): the stored fraction k(P+1+T)/(PT), the factors'
    bytes against the uint8 video's raw and stored bytes and against the source
    files, the exact relative error ||M - M_k||_F / ||M||_F and PSNR (computed out of
    core, chunk by chunk, all ranks in one pass over M; for factors of the Gram method,
    from the ||M||^2 and s_i^2 they recorded in float64, without reading M).  Writes ``report.json`` and a
    self-contained ``report.html`` in ``out`` and returns the report.

    With ``truth`` (read as :func:`pipelines.steps.evaluate.evaluate` reads it, in
    ``truth_format`` with ``frame_map``), the report also scores the models side by
    side against it, under ``quality``: the stored masks when there are any, each
    fitted background the store holds (fitted again when stale) and the SVD, each
    with its fit time (:func:`pipelines.steps.model_masks.model_masks`).

    Notes
    -----
    Memory: one chunk of M and U per task; this process holds s and a few images
    (and, with ``truth``, each model's masks of the truth's frames, one model at a time).
    """
    started = time.perf_counter()
    if truth_format not in TRUTH_FORMATS:
        raise InvalidParameterError(f"truth_format must be cdnet or masks, got {truth_format!r}")
    refuse_unreadable_truth(truth, truth_format=truth_format, frame_map=frame_map)  # before any work
    video = open_video(store)
    chosen = choose_factors(video, factors)
    wanted = sorted({*(r for r in (ranks or DEFAULT_REPORT_RANKS) if r <= chosen.rank), chosen.rank})
    if ranks and max(ranks) > chosen.rank:
        raise InvalidParameterError(
            f"--ranks go up to {max(ranks)} but factors {chosen.name!r} have rank {chosen.rank}; "
            f"decompose with --rank {max(ranks)} first"
        )
    folder = OutputFolder.at(out)
    folder.prepare()  # an unusable --out fails before any computing
    n_pixels, n_frames = int(np.prod(video.frames.shape[1:], dtype=np.int64)), video.n_frames
    with step_context(context) as job:
        client = job.computing_on(video.location)
        quality = None
        if truth is not None:  # first: a stale fitted background it fits again is the one shown below
            held = _fitted_backgrounds(video.location, video_fingerprint=video.fingerprint)
            models = [*(m.name for m in held if m.name in FITTED_MODELS), "svd"]
            separated = read_separation(video.location)
            shadows = separated is not None and separated.shadows  # the models as the masks were made
            job.say(f"scoring {', '.join(models)} against the ground truth")
            quality = evaluate(
                store=video.location,
                truth=truth,
                truth_format=truth_format,
                frame_map=frame_map,
                models=models,
                shadows=shadows,
                context=job,
            )
        # the read of every mask starts first: the workers count them while this
        # process fetches the factors' figures and draws
        activity = _start_activity(video, client=client)
        u, s, vt = client.persist([chosen.U, chosen.s, chosen.Vt])
        # the workers check the factors and make the images while this process draws the
        # plots; every check is passed before a figure is used
        finite = client.compute(list(finite_flags(u, s, vt)))
        shown = min(_COMPONENT_IMAGES, chosen.rank)
        components = client.compute([u[:, i] for i in range(shown)])
        fitted = _fitted_backgrounds(video.location, video_fingerprint=video.fingerprint)
        factor_sets = [(u, s, vt, chosen.rank), *((m.U, m.s, m.Vt, m.rank) for m in fitted)]
        all_backgrounds = client.compute(
            [
                background_images(
                    U, S, Vt, rank=rank, height=video.height, width=video.width, segments=video.segments
                )
                for U, S, Vt, rank in factor_sets
            ]
        )
        # a long video's plates over time: one per window (a few of them, spread over the video)
        windowed = [
            (m, shown_windows(m.windows, most=_PLATE_IMAGES))
            for m in fitted
            if m.windows is not None and len(m.windows) > len(video.segments)
        ]
        window_plates = client.compute(
            [
                background_images(
                    m.U, m.s, m.Vt, rank=m.rank, height=video.height, width=video.width, segments=windows
                )
                for m, windows in windowed
            ]
        )
        recorded = chosen.recorded_energies
        if recorded is None:
            job.say(f"measuring ranks {', '.join(map(str, wanted))}")
            matrix = video_columns(job.frames_to_read(video))  # uint8: converted a tile at a time
            # ||M - M_k||_F^2 for every rank and ||M||_F^2, in one pass over M
            sums = client.persist(squared_residuals(matrix, u, s, vt, wanted))
            job.wait(futures_of([sums]), description="report", frames=n_frames)
            sum_values, s_values = job.fetch(sums, s)
            residuals = np.asarray(sum_values[:-1], dtype=np.float64)
            total_energy = float(sum_values[-1])
        else:
            # the exact SVD's own figures: ||M||^2 - sum of the first k s_i^2, no pass over M
            job.say(f"ranks {', '.join(map(str, wanted))} from the exact SVD's eigenvalues")
            total_energy, eigenvalues = recorded
            residuals = np.array([max(total_energy - math.fsum(eigenvalues[:k]), 0.0) for k in wanted])
            (s_values,) = job.fetch(s)
        refuse_non_finite(chosen.name, job.gather(finite))
        error_values, mse_values = _errors(residuals, total_energy, n_values=n_pixels * n_frames)
        if not (np.isfinite(error_values).all() and math.isfinite(total_energy)):
            raise StoreDamagedError(
                f"the video in {video.location} reads as NaN or infinite values (a damaged chunk?); "
                "re-ingest it with `vidsvd ingest ... --overwrite`"
            )
        singular_values = np.asarray(s_values, dtype=np.float64)
        # ||M||_F^2 for the energy shares; none for an all-black video
        energy_total = max(total_energy, float(np.sum(singular_values**2))) if total_energy > 0 else None
        images = {
            "spectrum": spectrum_png(singular_values),
            "energy": energy_png(singular_values, total=energy_total),
        }
        component_images = [
            np.asarray(c).reshape(video.height, video.width, *video.frames.shape[3:])
            for c in job.gather(components)
        ]
        images["components"] = components_png(component_images, titles=[f"U[:, {i}]" for i in range(shown)])
        backgrounds, *fitted_backgrounds = job.gather(all_backgrounds)
        model_backgrounds = {m.name: plates for m, plates in zip(fitted, fitted_backgrounds, strict=True)}
        for index, image in enumerate(backgrounds):
            images[f"background-{index + 1}"] = background_png(np.asarray(image))
            for name, plates in model_backgrounds.items():  # beside the SVD's, per source video
                images[f"background-{index + 1} ({name})"] = background_png(np.asarray(plates[index]))
        for (model, windows), plates in zip(windowed, job.gather(window_plates), strict=True):
            images[f"background-plates over time ({model.name})"] = components_png(
                [np.asarray(plate) for plate in plates],
                titles=[window_label(window, fps=video.fps) for window in windows],
                stretch=False,
            )
        separation = _separation(video, folder, activity, job=job) if activity is not None else None
    source_bytes = video.source_bytes
    rows = rank_table(
        wanted,
        n_pixels=n_pixels,
        n_frames=n_frames,
        relative_errors=error_values,
        mean_squared_errors=mse_values,
        stored_video_bytes=video.stored_bytes,
    )
    for row in rows:
        row["bytes_vs_source"] = int(row["factor_bytes"] or 0) / source_bytes if source_bytes else None
        psnr = row["psnr_db"]
        if isinstance(psnr, float) and not math.isfinite(psnr):
            row["psnr_db"] = None  # an exact reconstruction: no error to measure, JSON has no infinity
    if energy_total is not None:
        # the share of ||M||_F^2 the first k components hold (1 - relative error^2 at rank k)
        energy = cumulative_energy(singular_values, total=energy_total)
    else:  # an all-black video: nothing to hold, every rank holds all of it
        energy = np.ones_like(singular_values)
    source_names = [Path(source.path).name for source in video.sources]
    result: dict[str, Any] = {
        "title": f"vidsvd report: {', '.join(source_names)}",
        "video": {
            "sources": source_names,
            "frames": n_frames,
            "size": f"{video.width}x{video.height}",
            "fps": video.fps,
            "pixels": n_pixels,
            "raw_bytes": n_pixels * n_frames,
            "stored_bytes": video.stored_bytes,
            "source_bytes": source_bytes,
            "segments": [list(segment) for segment in video.segments],
        },
        "factors": {"name": chosen.name, **chosen.provenance},
        "background_models": [
            {
                "name": model.name,
                "plates": model.rank,  # one per source video and window of it
                "windows": [list(window) for window in model.windows or ()],
                "passes": model.passes,
                "wall_time_s": model.wall_time_s,
                "factors_id": model.factors_id,
            }
            for model in fitted
        ],
        "ranks": rows,
        "singular_values": [float(v) for v in np.asarray(s_values)],
        "cumulative_energy": [float(v) for v in energy],
        **({"separation": separation.summary} if separation is not None else {}),
        **({"quality": quality} if quality is not None else {}),
        "store": _store_bytes(video.location),
        "timings": _timings(
            ingest_s=video.ingest_wall_time_s,
            decompose_s=chosen.wall_time_s,
            fit_s=_fit_seconds(fitted, activity.record) if activity is not None else None,
            separation=separation,
            report_s=time.perf_counter() - started,
        ),
        "provenance": {
            "video_fingerprint": video.fingerprint,
            "versions": chosen.versions,
            "ffmpeg": video.ffmpeg_version,
        },
    }
    if separation is not None:
        images["activity"] = activity_png(
            separation.fraction,
            fps=video.fps,
            segment_starts=[start for start, _ in video.segments[1:]],
            marked_frames=separation.sample_frames,
        )
        images["foreground_share"] = foreground_share_png(separation.share, mostly=MOSTLY_FOREGROUND_SHARE)
        images["masks"] = separation.samples_png
        write_file_atomic(folder.activity_csv, activity_csv(separation.fraction, fps=video.fps))
    write_file_atomic(
        folder.report_json, json.dumps(result, indent=2, default=_json_default, allow_nan=False) + "\n"
    )
    write_file_atomic(folder.report_html, render_report_html(result, images))
    job.say(f"wrote report.json and report.html in {folder.path}")
    return result


_SAMPLE_MASKS = 3
"""Frames shown with their masks: the busiest, spread over the video."""


@dataclass(frozen=True)
class _Separation:
    summary: dict[str, Any]
    fraction: npt.NDArray[np.float64]
    share: npt.NDArray[np.float32]
    sample_frames: list[int]
    samples_png: bytes
    separate_s: float | None
    encode_s: float | None


@dataclass(frozen=True)
class _Activity:
    """A complete separation's record, its masks, and the counts of them under way."""

    record: SeparationRecord
    masks: da.Array
    fraction: Future
    share: Future


def _start_activity(video: StoredVideo, *, client: Any) -> _Activity | None:
    """Start the read of the stored masks on the workers: each frame's and each pixel's share of foreground.

    None when the store holds no complete separation of this video.  The count runs
    while the caller does other work; :func:`_separation` collects it.
    """
    record = read_separation(video.location)
    if record is None or not record.complete or record.video_fingerprint != video.fingerprint:
        return None
    stored_masks = open_derived(video.location, MASKS_ARRAY).data
    # one graph: each chunk of masks is read once for both
    fraction, share = client.compute(
        [foreground_fraction(stored_masks), pixel_foreground_share(stored_masks)]
    )
    return _Activity(record=record, masks=stored_masks, fraction=fraction, share=share)


def _separation(
    video: StoredVideo, folder: OutputFolder, activity: _Activity, *, job: JobContext
) -> _Separation:
    """The store's complete separation of this video: its rule, activity and busiest frames.

    One read of the stored masks (the fraction of foreground of every frame, started by
    :func:`_start_activity`) and of ``_SAMPLE_MASKS`` frames with their masks.  The
    output folder's ``separation.json`` gives the timings when it records this same
    separation.
    """
    record, stored_masks = activity.record, activity.masks
    fraction_values, share_values = job.gather([activity.fraction, activity.share])
    fraction = np.asarray(fraction_values, dtype=np.float64)
    share = np.asarray(share_values, dtype=np.float32)
    unseen = mostly_foreground(share)
    frames = busiest_frames(fraction, count=_SAMPLE_MASKS)
    panels = []
    if frames:
        originals, masks = job.fetch(job.frames_to_fetch(video)[frames], stored_masks[frames])
        for original, mask in zip(originals, masks, strict=True):
            pair = np.concatenate([original, mask], axis=1)[np.newaxis]
            panels.append(label_panels(pair, panel_width=video.width, labels=("frame", "mask"))[0])
    samples = np.concatenate(panels, axis=0) if panels else np.zeros((1, 1), np.uint8)
    shown = folder.shown_separation(record.as_attrs()) or {}
    summary: dict[str, Any] = {
        "background": record.factors,
        "rank": record.rank,
        "threshold": record.threshold,
        "threshold_rule": record.threshold_rule or "not recorded",
        "cleanup": record.cleanup,
        **({"shadows": _shadows_shown(record)} if record.shadows else {}),
        "mean_foreground_fraction": float(fraction.mean()) if fraction.size else 0.0,
        "frames_with_foreground": int(np.count_nonzero(fraction)),
        "mostly_foreground_pixels": unseen,
        "busiest_frames": [
            {"frame": f, "time_s": round(f / video.fps, 3), "foreground_fraction": float(fraction[f])}
            for f in frames
        ],
        "timeline_csv": folder.activity_csv.name,
    }
    if shown.get("threshold_warning"):  # separate's, when its background did not fit
        summary["threshold_warning"] = str(shown["threshold_warning"])
    if shown.get("camera_warning"):  # separate's, when the sampled frames moved
        summary["camera_warning"] = str(shown["camera_warning"])
    if isinstance(shown.get("frames_registered"), dict):  # a fit that registered the frames
        summary["frames_registered"] = dict(shown["frames_registered"])
    warning = unseen_background_warning(unseen)
    if warning is not None:
        summary["warning"] = warning
        warnings.warn(warning, RuntimeWarning, stacklevel=2)
    return _Separation(
        summary=summary,
        fraction=fraction,
        share=share,
        sample_frames=frames,
        samples_png=image_png(samples),
        separate_s=shown.get("separate_s"),
        encode_s=shown.get("encode_s"),
    )


def _store_bytes(location: StoreLocation) -> dict[str, Any]:
    """What the store holds, array by array, and in all."""
    arrays = stored_bytes_by_array(location)
    return {
        "location": str(location),
        "arrays": [{"array": path, "bytes": size} for path, size in arrays.items()],
        "bytes": sum(arrays.values()),
    }


def _timings(
    *,
    ingest_s: float | None,
    decompose_s: float | None,
    fit_s: float | None,
    separation: _Separation | None,
    report_s: float,
) -> dict[str, float | None]:
    """Seconds of every step that made what the report shows, and their total.

    ``fit_s``: the fit of the fitted background the masks were made with (None for
    the SVD's), which ``separate_s`` does not count.
    """
    timings: dict[str, float | None] = {"ingest_s": ingest_s, "decompose_s": decompose_s}
    if fit_s is not None:
        timings["fit_s"] = fit_s
    if separation is not None:
        timings |= {"separate_s": separation.separate_s, "encode_s": separation.encode_s}
    timings["report_s"] = round(report_s, 3)
    timings["total_s"] = round(sum(v for v in timings.values() if v is not None), 3)
    return timings


def _fit_seconds(fitted: Sequence[StoredFactors], record: SeparationRecord) -> float | None:
    """The recorded fit time of the fitted background the separation used, or None (SVD masks)."""
    for model in fitted:
        if model.name == record.factors and model.factors_id == record.factors_id:
            return model.wall_time_s
    return None


def _fitted_backgrounds(location: StoreLocation, *, video_fingerprint: str) -> list[StoredFactors]:
    """The complete median and robust backgrounds of this video in the store, by name."""
    return [
        open_factors(location, summary.name, expected_fingerprint=video_fingerprint)
        for summary in complete_factors(location, video_fingerprint=video_fingerprint)
        if summary.method in FITTED_MODELS
    ]


def report_is_current(
    folder: OutputFolder, *, factors_id: str, ranks: Sequence[int] | None, video: StoredVideo
) -> bool:
    """True when the folder's ``report.json`` is of this write of the factors and (when given) these ranks.

    It must also show the fitted backgrounds ``video``'s store holds now, each of the
    same write (a background fitted since, by ``separate`` or ``evaluate --models``,
    or fitted again, makes the report stale).
    """
    previous = folder.previous_report()
    if previous is None:
        return False
    if not factors_id or previous.get("factors", {}).get("factors_id") != factors_id:
        return False
    shown = {str(model.get("factors_id")) for model in previous.get("background_models", [])}
    fitted = _fitted_backgrounds(video.location, video_fingerprint=video.fingerprint)
    if shown != {model.factors_id for model in fitted}:
        return False
    return ranks is None or {row["rank"] for row in previous.get("ranks", [])} >= set(ranks)


def _errors(residuals: np.ndarray, total_energy: float, *, n_values: int) -> tuple[np.ndarray, np.ndarray]:
    """Relative errors ``sqrt(residual / ||M||^2)`` and mean squared errors per rank.

    An all-zero M (a black video) reconstructed exactly has relative error 0, not 0/0.
    """
    mse = residuals / float(max(n_values, 1))
    if total_energy > 0:
        return np.sqrt(residuals / total_energy), mse
    return np.where(residuals == 0, 0.0, np.nan), mse


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _shadows_shown(record: SeparationRecord) -> str:
    """The separation's shadow rule in words, as it recorded it, with its ratio."""
    if record.shadow_ratio <= 0:
        return "the sample showed no shadow ratio, so no pixel was taken out"
    rule = record.shadow_rule or "cast shadows removed by an earlier rule, not recorded; separate again"
    return f"{rule} (ratio {record.shadow_ratio:.2f})"
