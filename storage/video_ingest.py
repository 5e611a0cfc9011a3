"""Ingest: decode source videos into ``STORE/video``, streaming, resumable.

The array is written chunk by chunk (whole frames per chunk).  After each chunk the
array's ``progress`` attribute records how many frames are safely on disk and the
sha256 of each chunk; zarr writes every chunk and every metadata document atomically,
so a process killed at any moment leaves a store whose ``video`` is either complete
(``complete: true`` is the last thing written) or recognisably incomplete, and
``resume=True`` continues from the last recorded chunk.

What a truncated or damaged source does: vidsvd ingests every frame ffmpeg can decode
and warns, with the frame count, when ffmpeg reported errors or delivered clearly
fewer frames than the container header announces.  A source with no decodable frame
is refused.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from storage.chunk_writer import Chunker, ChunkWriter
from storage.errors import (
    InvalidParameterError,
    SourceNotReadableError,
)
from storage.ingest_array import prepare_video_array, write_frame_times
from storage.integrity import WRITE_CONFIG
from storage.layout import (
    COMPLETE_ATTR,
    COORDINATES_ATTR,
    DEFAULT_CHUNK_BYTES,
    MAX_ZSTD_LEVEL,
    PROGRESS_ATTR,
    TIME_ARRAY,
    VIDEO_ZSTD_LEVEL,
)
from storage.provenance import BackgroundHash, content_fingerprint
from storage.store import StoreLocation, as_location
from storage.video_decoder import (
    DecodeOptions,
    DecodeResult,
    SourceInfo,
    decode_blocks,
    output_size,
    probe_video,
)
from storage.writer_lock import writer_lock

__all__ = ["IngestSummary", "IngestWarning", "default_chunk_frames", "ingest_videos"]


class IngestWarning(UserWarning):
    """A source decoded only partly (truncated or damaged file)."""


@dataclass(frozen=True, kw_only=True)
class IngestSummary:
    """What an ingest wrote.

    Attributes
    ----------
    shape : tuple of int
        Shape of ``STORE/video``: (frame, y, x[, channel]).
    chunk_frames : int
        Frames per chunk.
    fingerprint : str
        sha256 of what determines the stored frames (sources' sha256, ffmpeg version,
        decode parameters, shape); factors record it.
    wall_time_s : float
        Seconds spent by this call.
    resumed_from_frame : int
        0 for a fresh ingest; the first frame written by this call after ``resume``.
    warnings : list of str
        One line per partly decoded source.
    """

    shape: tuple[int, ...]
    chunk_frames: int
    fingerprint: str
    wall_time_s: float
    resumed_from_frame: int
    warnings: list[str]


def default_chunk_frames(frame_bytes: int, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Return how many whole frames fit in ``chunk_bytes`` (32 MiB by default), at least 1."""
    return max(1, chunk_bytes // frame_bytes)


def _validate_options(
    *,
    fps: float | None,
    scale: float | None,
    size: tuple[int, int] | None,
    chunk_frames: int | None,
    zstd_level: int | None,
) -> None:
    if fps is not None and (not math.isfinite(fps) or fps <= 0):
        raise InvalidParameterError(f"--fps must be a positive number of frames per second, got {fps}")
    if scale is not None and size is not None:
        raise InvalidParameterError("give either --scale or --size, not both")
    if scale is not None and (not math.isfinite(scale) or not 0 < scale <= 1):
        raise InvalidParameterError(f"--scale must be in (0, 1] (e.g. 0.5 halves each side), got {scale}")
    if size is not None and (size[0] < 1 or size[1] < 1):
        raise InvalidParameterError(
            f"--size must be WxH with positive sides (e.g. 320x240), got {size[0]}x{size[1]}"
        )
    if chunk_frames is not None and chunk_frames < 1:
        raise InvalidParameterError(f"--chunk-frames must be a positive integer, got {chunk_frames}")
    is_level = isinstance(zstd_level, int) and not isinstance(zstd_level, bool)
    if zstd_level is not None and not (is_level and 1 <= zstd_level <= MAX_ZSTD_LEVEL):
        raise InvalidParameterError(
            f"--zstd-level must be an integer in 1-{MAX_ZSTD_LEVEL} (default {VIDEO_ZSTD_LEVEL};"
            f" 5 stores about 15 % fewer bytes for a slower ingest), got {zstd_level!r}"
        )


def ingest_videos(
    sources: Sequence[str | os.PathLike[str]],
    *,
    store: StoreLocation | str | os.PathLike[str],
    fps: float | None = None,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    color: bool = False,
    chunk_frames: int | None = None,
    zstd_level: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> IngestSummary:
    """Decode one or more videos into ``STORE/video``, concatenated along frames.

    Parameters
    ----------
    sources : sequence of path
        Videos in the order they are concatenated.  Sources of another size are
        scaled to the output size (the first source's size after ``scale``, or ``size``).
    store : path or URL
        The store; created if absent.
    fps : float, optional
        Output frame rate (ffmpeg's ``fps`` filter); native when None.
    scale : float, optional
        Factor in (0, 1] applied to the first source's size.
    size : (int, int), optional
        Explicit output (width, height).
    color : bool
        Keep RGB (adds a ``channel`` axis of 3); gray otherwise.
    chunk_frames : int, optional
        Frames per chunk; by default as many whole frames as fit in 32 MiB.
    zstd_level : int, optional
        zstd level of the video's chunks, 1 to :data:`~storage.layout.MAX_ZSTD_LEVEL`;
        :data:`~storage.layout.VIDEO_ZSTD_LEVEL` by default.  Reading costs the same at
        every level; higher levels store fewer bytes for more compression CPU at ingest.
        A resumed ingest continues at the level it started with (another one given is
        refused).
    overwrite : bool
        Replace an existing vidsvd store (a foreign one is never touched).
    resume : bool
        Continue an interrupted ingest with the same sources and options.
    progress : bool
        Show a progress bar on stderr.
    log : callable, optional
        Receives one-line messages for the user (resume position, warnings).

    Returns
    -------
    IngestSummary

    Notes
    -----
    Memory: at most five chunks of ``chunk_frames * y * x [* 3]`` bytes (one being
    decoded, two queued, two being compressed and written), whatever the video's
    length.  Every source is decoded exactly once (twice from the start of the
    interrupted source on ``resume``: frames already stored are decoded and skipped).
    """
    started = time.perf_counter()
    say = log if log is not None else (lambda _message: None)
    if not sources:
        raise InvalidParameterError("give at least one video to ingest")
    _validate_options(fps=fps, scale=scale, size=size, chunk_frames=chunk_frames, zstd_level=zstd_level)
    if overwrite and resume:
        raise InvalidParameterError("--overwrite and --resume contradict each other; choose one")
    loc = as_location(store)
    infos = [probe_video(source) for source in sources]
    width, height = output_size(infos[0], scale=scale, size=size)
    options = DecodeOptions(width=width, height=height, fps=fps, color=color)
    frames_per_chunk = chunk_frames or default_chunk_frames(options.frame_bytes)

    with writer_lock(loc, step="ingest"):
        return _ingest_into(
            loc,
            infos=infos,
            options=options,
            frames_per_chunk=frames_per_chunk,
            zstd_level=zstd_level,
            fps=fps,
            scale=scale,
            overwrite=overwrite,
            resume=resume,
            progress=progress,
            say=say,
            started=started,
        )


def _ingest_into(
    loc: StoreLocation,
    *,
    infos: Sequence[SourceInfo],
    options: DecodeOptions,
    frames_per_chunk: int,
    zstd_level: int | None,
    fps: float | None,
    scale: float | None,
    overwrite: bool,
    resume: bool,
    progress: bool,
    say: Callable[[str], None],
    started: float,
) -> IngestSummary:
    """Create (or resume) the video array and write every frame; the writer lock is held."""
    stored, start_frame = prepare_video_array(
        loc,
        infos=infos,
        options=options,
        chunk_frames=frames_per_chunk,
        zstd_level=zstd_level,
        scale=scale,
        overwrite=overwrite,
        resume=resume,
    )
    # Every chunk holds frames: skip zarr's check for all-fill-value chunks, which
    # compares each chunk element by element and cost 40% of a write.
    array = stored.with_config(WRITE_CONFIG)
    progress_state: dict[str, Any] = dict(array.attrs[PROGRESS_ATTR])
    recorded_sources: list[dict[str, Any]] = list(progress_state["sources_done"])
    if start_frame:
        say(f"resuming {loc}: {start_frame} frames already stored, continuing from there")

    total_estimate = sum(info.estimated_frames(fps) for info in infos)
    bar = tqdm(
        total=total_estimate or None,
        initial=start_frame,
        unit="frame",
        desc="ingest",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    writer = ChunkWriter(array, progress_state, expected_frames=total_estimate)
    chunker = Chunker(frames_per_chunk, options.frame_shape)
    partial_warnings: list[str] = []
    source_records: list[dict[str, Any]] = []
    try:
        offset = 0
        for index, info in enumerate(infos):
            if index < len(recorded_sources) and recorded_sources[index]["frame_range"][1] <= start_frame:
                _check_unchanged(info, recorded_sources[index])
                source_records.append(recorded_sources[index])
                offset = recorded_sources[index]["frame_range"][1]
                continue  # every frame of this source is stored already
            hasher = BackgroundHash(info.path, images=info.images)
            result = DecodeResult()
            skip = max(0, start_frame - offset)
            for block in decode_blocks(info, options, block_frames=frames_per_chunk, result=result):
                if skip >= len(block):
                    skip -= len(block)
                    continue
                for chunk in chunker.add(block[skip:]):
                    writer.put(chunk)
                    bar.update(len(chunk))
                skip = 0
            if result.n_frames == 0:
                if fps is not None and info.duration_s > 0:
                    raise SourceNotReadableError(
                        f"{info.path} gives no frame at --fps {fps:g} (it lasts {info.duration_s:g} s);"
                        f" give an --fps of at least {1 / info.duration_s:.3g}"
                    )
                raise SourceNotReadableError(
                    f"{info.path} decodes to zero frames; give a video with at least one frame"
                )
            message = _partial_decode_message(info, result, info.fewest_frames(fps))
            if message:
                partial_warnings.append(message)
                warnings.warn(message, IngestWarning, stacklevel=2)
            record = {
                "path": info.path,
                "size_bytes": info.size_bytes,
                "sha256": hasher.result(),
                "codec": info.codec,
                "native_fps": info.fps,
                "native_width": info.width,
                "native_height": info.height,
                "duration_s": info.duration_s,
                "decoded_frames": result.n_frames,
                "frame_range": [offset, offset + result.n_frames],
            }
            offset += result.n_frames
            source_records.append(record)
            writer.record_sources(list(source_records))
        tail = chunker.flush()
        if tail is not None:
            writer.put(tail)
            bar.update(len(tail))
        writer.close()
        # the total was the headers' estimate: end the bar at the frames there were
        bar.total = bar.n
        bar.refresh()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    fingerprint = content_fingerprint(array.shape, array.attrs["ingest"], source_records)
    write_frame_times(loc, n_frames=int(array.shape[0]), fps=float(array.attrs["fps"]))
    array.update_attributes(
        {
            COORDINATES_ATTR: TIME_ARRAY,
            "sources": source_records,
            "segments": [r["frame_range"] for r in source_records],
            "fingerprint": fingerprint,
            "ingest_wall_time_s": round(time.perf_counter() - started, 3),
        }
    )
    array.update_attributes({COMPLETE_ATTR: True})
    return IngestSummary(
        shape=tuple(int(n) for n in array.shape),
        chunk_frames=frames_per_chunk,
        fingerprint=fingerprint,
        wall_time_s=time.perf_counter() - started,
        resumed_from_frame=start_frame,
        warnings=partial_warnings,
    )


def _partial_decode_message(info: SourceInfo, result: DecodeResult, expected: int) -> str:
    errors = result.warnings or []
    short = expected > 0 and result.n_frames < 0.9 * expected
    if not errors and not short:
        return ""
    detail = f"; ffmpeg said: {errors[-1][:160]}" if errors else ""
    return (
        f"{info.path}: decoded {result.n_frames} frames (header announces about {expected}); "
        f"the file may be truncated or damaged, ingested what decodes{detail}"
    )


def _check_unchanged(info: SourceInfo, record: dict[str, Any]) -> None:
    if not info.same_content(size_bytes=record["size_bytes"], sha256=record["sha256"]):
        raise InvalidParameterError(
            f"{info.path} changed since the interrupted ingest began; use --overwrite to start again"
        )
