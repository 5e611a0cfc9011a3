"""Composition: wires storage, cluster and the pure computations into user-level steps.

Every function here is what a notebook user calls and what the command line runs:
each reads its inputs from the store and writes its outputs there, so every step can
be rerun or resumed alone.
"""

from __future__ import annotations

import json
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import distributed
import numpy as np
import numpy.typing as npt
from distributed import futures_of
from tqdm import tqdm

from cluster.client import (
    ClusterOptions,
    connect,
    dashboard_link,
    describe,
    peak_worker_memory,
    worker_memory_limit,
)
from cluster.progress import wait_with_progress
from pipelines.baselines import run_baseline
from pipelines.decompose import SvdParameters
from pipelines.decompose import decompose as decompose_matrix
from pipelines.matrix import (
    MAX_MERGED_CHUNK_BYTES,
    frames_per_matrix_chunk,
    matrix_chunk_bytes,
    video_matrix,
)
from pipelines.metrics import (
    Scores,
    cdnet_scores,
    cumulative_energy,
    mean_squared_errors,
    rank_table,
    relative_errors,
)
from pipelines.plots import background_png, components_png, energy_png, image_png, spectrum_png
from pipelines.report_html import render_report_html
from pipelines.separate import (
    apply_factors,
    auto_threshold,
    background_frames,
    background_images,
    foreground_frames,
    masks,
    sample_frames,
    to_storage_foreground,
)
from pipelines.synthetic import SceneSpec, write_scene
from storage.derived import derived_attrs, open_derived, prepare_derived, write_file_atomic
from storage.errors import (
    InvalidParameterError,
    StoreIncompleteError,
    StoreNotFoundError,
    StoreNotSharedError,
)
from storage.factors import (
    StoredFactors,
    check_factors_name,
    default_factors_name,
    find_reusable_factors,
    list_factors,
    open_factors,
    write_factors,
)
from storage.store import (
    StoreLocation,
    as_location,
    create_parent_folder,
    store_exists,
    store_problem,
)
from storage.truth import read_cdnet_truth, read_truth_masks
from storage.video_array import StoredVideo, open_video
from storage.video_decoder import DecodeOptions, SourceInfo, decode_blocks, probe_video
from storage.video_encoder import write_video
from storage.video_ingest import IngestSummary, ingest_videos, library_versions

__all__ = [
    "DecomposeSummary",
    "RunSummary",
    "SeparateSummary",
    "apply",
    "decompose",
    "demo",
    "evaluate",
    "ingest",
    "probe",
    "report",
    "run_all",
    "separate",
]


def probe(video: str | os.PathLike[str]) -> SourceInfo:
    """Read a video's header (codec, fps, size, duration); raise a clear error if it is no video."""
    return probe_video(video)


def ingest(
    videos: Sequence[str | os.PathLike[str]],
    *,
    store: StoreLocation | str | os.PathLike[str],
    fps: float | None = None,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    color: bool = False,
    chunk_frames: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> IngestSummary:
    """Decode ``videos`` into ``STORE/video``; see :func:`storage.video_ingest.ingest_videos`.

    Ingest needs no cluster: ffmpeg decodes in its own process and one writer thread
    compresses, with about four chunks in memory at once.
    """
    return ingest_videos(
        videos,
        store=store,
        fps=fps,
        scale=scale,
        size=size,
        color=color,
        chunk_frames=chunk_frames,
        overwrite=overwrite,
        resume=resume,
        progress=progress,
        log=log,
    )


@dataclass(frozen=True, kw_only=True)
class DecomposeSummary:
    """What :func:`decompose` did.

    Attributes
    ----------
    name : str
        Name of the factor set under ``STORE/factors``.
    reused : bool
        True when complete factors of the same method and parameters and at least
        the asked rank already existed: nothing was computed.
    rank : int
        Rank of the stored factor set (may exceed the asked rank when reused).
    wall_time_s : float
        Seconds of this call.
    singular_values : list of float
        The leading singular values (of the asked rank).
    """

    name: str
    reused: bool
    rank: int
    wall_time_s: float
    singular_values: list[float]


def decompose(
    *,
    store: StoreLocation | str | os.PathLike[str],
    parameters: SvdParameters,
    name: str | None = None,
    force: bool = False,
    cluster: ClusterOptions | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> DecomposeSummary:
    """Truncated SVD of the stored video's matrix M on a dask.distributed cluster.

    Reads ``STORE/video`` (never the source video), builds the lazy float32 matrix M
    (pixel, frame), decomposes it with ``parameters`` on the cluster of ``cluster``
    (an embedded LocalCluster by default), and writes U, s, Vt to
    ``STORE/factors/NAME`` with their provenance, ``complete`` last.  Complete
    factors of the same method and parameters with at least the asked rank are
    reused unless ``force``.  On an existing scheduler every worker first checks
    that it can use the store (:class:`storage.errors.StoreNotSharedError` names
    those that cannot); so do :func:`separate` and :func:`report`.

    Notes
    -----
    Memory: the workers hold one chunk of M per task (five times a video chunk) plus
    the (P, rank + oversample) panels of the randomized method; the exact method
    needs about ``n_blocks * T**2 * 8`` bytes and is refused when that exceeds a
    worker's memory.  The client process holds only the small s.
    """
    started = time.perf_counter()
    say = log if log is not None else (lambda _message: None)
    video = open_video(store)
    matrix = video_matrix(video.frames)
    n_pixels, n_frames = (int(n) for n in matrix.shape)
    parameters.validate(n_pixels=n_pixels, n_frames=n_frames)
    factors_name = name or default_factors_name(parameters.method, parameters.rank)
    if not force:
        found = find_reusable_factors(
            video.location,
            parameters=parameters,
            video_fingerprint=video.fingerprint,
            name=name,
        )
        if found is not None:
            say(
                f"reusing factors {found.name!r} (rank {found.rank} >= {parameters.rank}, same method and "
                "parameters): nothing to compute; pass --force to recompute"
            )
            return DecomposeSummary(
                name=found.name,
                reused=True,
                rank=found.rank,
                wall_time_s=time.perf_counter() - started,
                singular_values=[float(v) for v in found.s[: parameters.rank].compute()],
            )
    check_factors_name(video.location, factors_name, overwrite=force)
    with connect(cluster or ClusterOptions()) as client:
        _require_workers_see_store(client, video.location, cluster=cluster)
        say(f"computing on {describe(client)}")
        link = dashboard_link(client)
        if link and cluster is not None and (cluster.scheduler or cluster.batch):
            say(f"dashboard: {link}")
        memory_limit = worker_memory_limit(client)
        chunk_bytes = matrix_chunk_bytes(matrix)
        if memory_limit > 0 and chunk_bytes * 2 > memory_limit:
            raise InvalidParameterError(
                f"a worker's memory limit ({_mib(memory_limit)}) cannot hold one chunk of M "
                f"({_mib(chunk_bytes)} as float32, twice that while it is converted); "
                "raise --memory-limit or re-ingest with a smaller --chunk-frames"
            )
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        total_threads = sum(int(w.get("nthreads", 1)) for w in workers) or 1
        if parameters.method == "randomized":
            merged = frames_per_matrix_chunk(
                video.frames,
                min_chunks=2 * total_threads,
                max_chunk_bytes=min(MAX_MERGED_CHUNK_BYTES, memory_limit // 8)
                if memory_limit > 0
                else MAX_MERGED_CHUNK_BYTES,
            )
            if merged is not None:
                matrix = video_matrix(video.frames, frames_per_chunk=merged)
        cluster_memory = memory_limit * len(workers) if memory_limit else None
        # Keeping M between passes avoids reading and converting it 2q + 2 times (2.4x
        # faster on the notebook's 0.5 GB matrix); only when it takes a small share of
        # the cluster's memory, otherwise each pass reads the store again.
        keep = cluster_memory is not None and matrix.nbytes <= _KEEP_IN_MEMORY_SHARE * cluster_memory
        u, s, vt = decompose_matrix(
            matrix,
            parameters,
            memory_limit_bytes=cluster_memory,
            threads=total_threads,
            keep_in_memory=keep,
        )
        u, s, vt = client.persist([u, s, vt])
        wait_with_progress(
            client, futures_of([u, s, vt]), description=f"decompose ({parameters.method})", show=progress
        )
        elapsed = time.perf_counter() - started
        attrs: dict[str, Any] = {
            **parameters.as_attrs(),
            "video_fingerprint": video.fingerprint,
            "n_pixels": n_pixels,
            "n_frames": n_frames,
            "wall_time_s": round(elapsed, 3),
            "peak_worker_memory": peak_worker_memory(client),
            "kept_in_memory": keep,
            "matrix_frames_per_chunk": int(matrix.chunks[1][0]),
            "cluster": describe(client),
            "versions": library_versions(),
        }
        write_factors(video.location, name=factors_name, U=u, s=s, Vt=vt, attrs=attrs, overwrite=force)
        singular_values = [float(v) for v in s.compute()]
    return DecomposeSummary(
        name=factors_name,
        reused=False,
        rank=parameters.rank,
        wall_time_s=time.perf_counter() - started,
        singular_values=singular_values,
    )


_KEEP_IN_MEMORY_SHARE = 0.25
"""M (float32) is kept in worker memory between passes when it is at most this share
of the cluster's memory."""


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f} MiB"


_LISTED_WORKERS = 4
"""Workers named in the error when some cannot see the store; the rest are counted."""


def _require_workers_see_store(
    client: distributed.Client,
    location: StoreLocation,
    *,
    cluster: ClusterOptions | None,
    must_exist: bool = True,
) -> None:
    """Refuse to compute when some workers of an existing scheduler cannot use the store.

    The workers of an embedded cluster share this machine's filesystem and
    environment; those of an existing scheduler may run elsewhere, where a local
    path may not exist and object-storage credentials may be missing.  Each worker
    runs :func:`storage.store.store_problem` on the store as this process resolved
    it (a local path made absolute here), one small call per worker.

    Raises
    ------
    StoreNotSharedError
        Naming the workers, what they found, and what to do.
    """
    if cluster is None or not cluster.scheduler:
        return
    shared = StoreLocation(url=str(location.local_path)) if location.is_local else location
    answers = client.run(store_problem, shared, must_exist=must_exist, on_error="return")
    problems = {
        address: answer if isinstance(answer, str) or answer is None else _failed_check(answer)
        for address, answer in answers.items()
    }
    failing = sorted(address for address, problem in problems.items() if problem)
    if not failing:
        return
    listed = ", ".join(failing[:_LISTED_WORKERS])
    if len(failing) > _LISTED_WORKERS:
        listed += f" and {len(failing) - _LISTED_WORKERS} more"
    reason = problems[failing[0]]
    who = f"{len(failing)} of {len(problems)} dask workers ({listed})"
    if location.is_local:
        raise StoreNotSharedError(
            f"{who} cannot see the store {shared}: {reason}; put the store on a filesystem every worker "
            "mounts at the same path, or on object storage (--store s3://bucket/path.zarr)"
        )
    raise StoreNotSharedError(
        f"{who} cannot use the store {shared}: {reason} (on the workers: give them the credentials "
        "and endpoint this machine uses)"
    )


def _failed_check(error: BaseException) -> str:
    if isinstance(error, ImportError):
        return f"the check could not run there ({error}); install vidsvd on every worker"
    return f"the check failed there ({type(error).__name__}: {error})"


# --------------------------------------------------------------------------- separate


@dataclass(frozen=True, kw_only=True)
class SeparateSummary:
    """What :func:`separate` wrote.

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


_SAMPLE_FRAMES = 24
"""Frames whose foreground decides the ``auto`` threshold."""


def choose_factors(store: StoreLocation | str | os.PathLike[str], name: str | None) -> StoredFactors:
    """Open the named factors, or the complete set of highest rank tied to the current video."""
    video = open_video(store)
    if name is not None:
        return open_factors(video.location, name, expected_fingerprint=video.fingerprint)
    usable = [
        f
        for f in list_factors(video.location)
        if f.complete and f.attrs.get("video_fingerprint") == video.fingerprint
    ]
    if not usable:
        raise StoreNotFoundError(
            f"{video.location} has no complete factors of its video; run `vidsvd decompose --store "
            f"{video.location} --rank K` first"
        )
    best = max(usable, key=lambda f: (f.rank, f.name))
    return open_factors(video.location, best.name, expected_fingerprint=video.fingerprint)


def separate(
    *,
    store: StoreLocation | str | os.PathLike[str],
    out: str | os.PathLike[str],
    factors: str | None = None,
    rank: int | None = None,
    threshold: float | None = None,
    cluster: ClusterOptions | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> SeparateSummary:
    """Background, foreground and masks of every frame, from the stored video and factors.

    ``rank=None`` uses one component per source segment: the original notebook's
    rank-1 background for one video, one background per scene for concatenated
    videos.  Measured on the notebook's own video (15 ground-truth masks, 3x3 median
    clean-up), the F-measure at the best threshold falls with the rank: 0.90 at rank
    1, 0.86 at 2, 0.77 at 5 and 10, because people who linger become components.

    Writes ``STORE/foreground`` (int16, grey levels, frame - background) and
    ``STORE/masks`` (uint8 0/255), then in ``out``: ``background.png`` (one per source
    segment: ``background-1.png``, ``background-2.png``... when the store holds
    several videos), ``foreground.mp4``, ``compare.mp4`` (original | background |
    foreground | mask) and a few sample frames as PNG.  ``threshold=None`` picks the
    threshold from the data (:func:`pipelines.separate.auto_threshold` on a sample of
    frames).

    Notes
    -----
    Nothing is decomposed again.  Workers hold one chunk of frames per task plus U_k;
    the client streams the videos to the encoder one chunk of frames at a time.
    In ``foreground.mp4`` grey 128 is "no change": a pixel is ``128 + foreground / 2``,
    so darker than the background shows dark and brighter shows bright.
    """
    started = time.perf_counter()
    say = log if log is not None else (lambda _message: None)
    video = open_video(store)
    if video.frames.ndim != 3:
        raise InvalidParameterError("separate works on gray videos; ingest without --color")
    chosen = choose_factors(video.location, factors)
    k = min(chosen.rank, len(video.segments)) if rank is None else rank
    if not 1 <= k <= chosen.rank:
        raise InvalidParameterError(
            f"--rank must be between 1 and {chosen.rank} (factors {chosen.name!r}), got {k}"
        )
    height, width = video.height, video.width
    out_dir = Path(out)
    with connect(cluster or ClusterOptions()) as client:
        _require_workers_see_store(client, video.location, cluster=cluster)
        say(f"separating with factors {chosen.name!r}, rank {k}, on {describe(client)}")
        u, s, vt = client.persist([chosen.U[:, :k], chosen.s[:k], chosen.Vt[:k]])
        background = background_frames(u, s, vt, rank=k, height=height, width=width)
        foreground = foreground_frames(video.frames, background)
        if threshold is None:
            picked = sample_frames(video.n_frames, _SAMPLE_FRAMES)
            threshold = auto_threshold(foreground[picked].compute())
            say(f"auto threshold: |foreground| > {threshold:.1f} grey levels")
        attrs = {
            "factors": chosen.name,
            "rank": k,
            "threshold": float(threshold),
            "video_fingerprint": video.fingerprint,
            "cleanup": "median 3x3",
        }
        stored_foreground = to_storage_foreground(foreground)
        frame_masks = masks(foreground, threshold=float(threshold))
        # One graph for both arrays: each task computes a chunk's background once and
        # writes its foreground and mask; nothing is held whole.
        write = prepare_derived(
            video.location, arrays={"foreground": stored_foreground, "masks": frame_masks}, attrs=attrs
        )
        stored = client.compute(write.task)
        wait_with_progress(client, [stored], description="separate", show=progress)
        stored.result()
        write.finish()
        images = background_images(u, s, vt, rank=k, height=height, width=width, segments=video.segments)
        outputs = _write_backgrounds(out_dir, [np.asarray(i) for i in client.compute(images, sync=True)])
    n_frames, blocks = _stored_blocks(video.location, progress=progress)
    outputs += _write_videos(blocks, out_dir, n_frames=n_frames, fps=video.fps)
    say(f"wrote {', '.join(outputs)} in {out_dir}")
    return SeparateSummary(
        factors=chosen.name,
        rank=k,
        threshold=float(threshold),
        outputs=outputs,
        wall_time_s=time.perf_counter() - started,
    )


def _write_backgrounds(out_dir: Path, images: Sequence[npt.NDArray[Any]]) -> list[str]:
    names = (
        ["background.png"] if len(images) == 1 else [f"background-{i + 1}.png" for i in range(len(images))]
    )
    if len(images) > 1:  # the first also under the plain name, for tools that expect one
        names = ["background.png", *names]
        images = [images[0], *images]
    for file_name, image in zip(names, images, strict=True):
        write_file_atomic(out_dir / file_name, image_png(np.clip(np.rint(image), 0, 255).astype(np.uint8)))
    return names


def _visible_foreground(foreground: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    """Map foreground grey levels (-255..255) to a visible image: 128 is no change.

    ``128 + floor(foreground / 2)`` clipped to 0..255, in int16 (no int32 copies).
    """
    visible = np.right_shift(foreground, 1)  # floor division by 2, also below 0
    visible += 128
    np.clip(visible, 0, 255, out=visible)
    return visible.astype(np.uint8)


def _background_from(
    original: npt.NDArray[np.uint8], foreground: npt.NDArray[np.int16]
) -> npt.NDArray[np.uint8]:
    """The original minus the foreground, clipped to 0..255, in int16.

    The foreground is first clipped to -256..256, which changes no result (beyond
    that the difference is clipped anyway) and keeps the int16 arithmetic exact.
    """
    background = np.clip(foreground, -256, 256)
    np.subtract(original, background, out=background)
    np.clip(background, 0, 255, out=background)
    return background.astype(np.uint8)


Blocks = Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int16], npt.NDArray[np.uint8]]]
"""Chunks of (original uint8, foreground int16, mask uint8), each (frame, y, x)."""


def _stored_blocks(location: StoreLocation, *, progress: bool) -> tuple[int, Blocks]:
    """The frame count and the stored (original, foreground, mask) chunk by chunk."""
    video = open_video(location)
    foreground = open_derived(location, "foreground").data
    frame_masks = open_derived(location, "masks").data
    step = int(foreground.chunks[0][0])

    def blocks() -> Blocks:
        bar = tqdm(total=video.n_frames, unit="frame", desc="encode", disable=not progress, file=sys.stderr)
        for start in range(0, video.n_frames, step):
            stop = min(start + step, video.n_frames)
            original, fg, mask = dask.compute(
                video.frames[start:stop], foreground[start:stop], frame_masks[start:stop]
            )
            bar.update(stop - start)
            yield original, fg, mask
        bar.close()

    return video.n_frames, blocks()


COMPARE_MAX_WIDTH = 2560
"""compare.mp4 is at most this wide: its four panels are shrunk by an integer factor
when the frames are wider than a quarter of it (1280x720 footage gives four
640x360 panels), which also makes it four times cheaper to encode."""


def _shrink(frames: npt.NDArray[np.uint8], factor: int) -> npt.NDArray[np.uint8]:
    """(n, y, x[, c]) -> (n, y // factor, x // factor[, c]): means of factor x factor blocks.

    Edge rows and columns that do not fill a block are dropped.
    """
    if factor <= 1:
        return frames
    n, height, width = frames.shape[:3]
    rows, cols = height // factor, width // factor
    # strided slices, one add per position in the block: summing a reshaped
    # (n, rows, factor, cols, factor) array over two inner axes is 10x slower
    trimmed = frames[:, : rows * factor, : cols * factor]
    sum_type = np.uint16 if factor * factor * 255 <= np.iinfo(np.uint16).max else np.uint32
    sums = np.zeros((n, rows, cols, *frames.shape[3:]), dtype=sum_type)
    for dy in range(factor):
        for dx in range(factor):
            sums += trimmed[:, dy::factor, dx::factor]
    sums += factor * factor // 2  # round to nearest
    sums //= factor * factor
    return sums.astype(np.uint8)


def _write_videos(blocks: Blocks, out_dir: Path, *, n_frames: int, fps: float) -> list[str]:
    """Stream foreground.mp4, compare.mp4 and a few sample frames (PNG) from blocks.

    One pass over the blocks feeds both encoders: compare frames go to a second
    encoder thread through a queue of two chunks.
    """
    samples = {int(t) for t in sample_frames(n_frames, 4)}
    sample_files: list[str] = []

    def compare_frames(
        original: npt.NDArray[np.uint8], fg: npt.NDArray[np.int16], mask: npt.NDArray[np.uint8]
    ) -> npt.NDArray[np.uint8]:
        panels = (original, _background_from(original, fg), _visible_foreground(fg), mask)
        factor = math.ceil(len(panels) * original.shape[2] / COMPARE_MAX_WIDTH)
        return np.concatenate([_shrink(panel, factor) for panel in panels], axis=2)

    handoff: queue.Queue[npt.NDArray[np.uint8] | BaseException | None] = queue.Queue(maxsize=2)
    compare_error: list[BaseException] = []

    def compare_iterator() -> Iterator[npt.NDArray[np.uint8]]:
        while (item := handoff.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def encode_compare() -> None:
        try:
            write_video(out_dir / "compare.mp4", compare_iterator(), fps=fps, odd_size="pad")
        except BaseException as exc:  # reported by the main thread
            compare_error.append(exc)

    def hand_over(item: npt.NDArray[np.uint8] | BaseException | None) -> None:
        while compare_thread.is_alive():
            try:
                handoff.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def visible_stream() -> Iterator[npt.NDArray[np.uint8]]:
        start = 0
        for original, fg, mask in blocks:
            side_by_side = compare_frames(original, fg, mask)
            for offset in range(len(fg)):
                if start + offset in samples:
                    name = f"frame-{start + offset:06d}.png"
                    write_file_atomic(out_dir / name, image_png(side_by_side[offset]))
                    sample_files.append(name)
            hand_over(side_by_side)
            start += len(fg)
            yield _visible_foreground(fg)

    out_dir.mkdir(parents=True, exist_ok=True)
    compare_thread = threading.Thread(target=encode_compare, name="vidsvd-compare-encoder", daemon=True)
    compare_thread.start()
    try:
        write_video(out_dir / "foreground.mp4", visible_stream(), fps=fps, odd_size="pad")
    except BaseException as exc:
        hand_over(RuntimeError(f"foreground.mp4 failed: {exc}"))
        compare_thread.join()
        raise
    hand_over(None)
    compare_thread.join()
    if compare_error:
        raise compare_error[0]
    return ["foreground.mp4", "compare.mp4", *sorted(sample_files)]


# --------------------------------------------------------------------------- report

DEFAULT_REPORT_RANKS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 700)
_COMPONENT_IMAGES = 8


def report(
    *,
    store: StoreLocation | str | os.PathLike[str],
    out: str | os.PathLike[str],
    ranks: Sequence[int] | None = None,
    factors: str | None = None,
    cluster: ClusterOptions | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compression and reconstruction quality per rank, spectrum and components.

    For each rank k (default: those of :data:`DEFAULT_REPORT_RANKS` up to the
    factors' rank, plus that rank): the stored fraction k(P+1+T)/(PT), the factors'
    bytes against the uint8 video's raw and stored bytes and against the source
    files, the exact relative error ||M - M_k||_F / ||M||_F and PSNR (computed out of
    core, chunk by chunk, all ranks in one pass over M).  Writes ``report.json`` and a
    self-contained ``report.html`` in ``out`` and returns the report.

    Notes
    -----
    Memory: one chunk of M and U per task; the client holds s and a few images.
    """
    started = time.perf_counter()
    say = log if log is not None else (lambda _message: None)
    video = open_video(store)
    chosen = choose_factors(video.location, factors)
    wanted = sorted({*(r for r in (ranks or DEFAULT_REPORT_RANKS) if r <= chosen.rank), chosen.rank})
    if ranks and max(ranks) > chosen.rank:
        raise InvalidParameterError(
            f"--ranks go up to {max(ranks)} but factors {chosen.name!r} have rank {chosen.rank}; "
            f"decompose with --rank {max(ranks)} first"
        )
    matrix = video_matrix(video.frames)
    n_pixels, n_frames = (int(n) for n in matrix.shape)
    with connect(cluster or ClusterOptions()) as client:
        _require_workers_see_store(client, video.location, cluster=cluster)
        say(f"measuring ranks {', '.join(map(str, wanted))} on {describe(client)}")
        u, s, vt = client.persist([chosen.U, chosen.s, chosen.Vt])
        errors = relative_errors(matrix, u, s, vt, wanted)
        mses = mean_squared_errors(matrix, u, s, vt, wanted)
        errors, mses = client.persist([errors, mses])
        wait_with_progress(client, futures_of([errors, mses]), description="report", show=progress)
        error_values, mse_values, s_values = client.compute([errors, mses, s], sync=True)
        shown = min(_COMPONENT_IMAGES, chosen.rank)
        component_images = [
            np.asarray(c).reshape(video.height, video.width, *video.frames.shape[3:])
            for c in client.compute([u[:, i] for i in range(shown)], sync=True)
        ]
        backgrounds = client.compute(
            background_images(
                u, s, vt, rank=chosen.rank, height=video.height, width=video.width, segments=video.segments
            ),
            sync=True,
        )
    source_bytes = sum(int(src["size_bytes"]) for src in video.attrs["sources"])
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
    energy = cumulative_energy(np.asarray(s_values))
    result: dict[str, Any] = {
        "title": f"vidsvd report: {', '.join(Path(src['path']).name for src in video.attrs['sources'])}",
        "video": {
            "sources": [Path(src["path"]).name for src in video.attrs["sources"]],
            "frames": n_frames,
            "size": f"{video.width}x{video.height}",
            "fps": video.fps,
            "pixels": n_pixels,
            "raw_bytes": n_pixels * n_frames,
            "stored_bytes": video.stored_bytes,
            "source_bytes": source_bytes,
            "segments": [list(segment) for segment in video.segments],
        },
        "factors": {"name": chosen.name, **{k: v for k, v in chosen.attrs.items() if k != "versions"}},
        "ranks": rows,
        "singular_values": [float(v) for v in np.asarray(s_values)],
        "cumulative_energy": [float(v) for v in energy],
        "timings": {
            "ingest_s": video.attrs.get("ingest_wall_time_s"),
            "decompose_s": chosen.attrs.get("wall_time_s"),
            "report_s": round(time.perf_counter() - started, 3),
        },
        "provenance": {
            "video_fingerprint": video.fingerprint,
            "versions": chosen.attrs.get("versions", {}),
            "ffmpeg": video.attrs.get("ingest", {}).get("ffmpeg"),
        },
    }
    images = {
        "spectrum": spectrum_png(np.asarray(s_values)),
        "energy": energy_png(np.asarray(s_values)),
        "components": components_png(component_images, titles=[f"U[:, {i}]" for i in range(shown)]),
    }
    for index, image in enumerate(backgrounds):
        images[f"background-{index + 1}"] = background_png(np.asarray(image))
    out_dir = Path(out)
    write_file_atomic(out_dir / "report.json", json.dumps(result, indent=2, default=_json_default) + "\n")
    write_file_atomic(out_dir / "report.html", render_report_html(result, images))
    say(f"wrote report.json and report.html in {out_dir}")
    return result


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def format_rank_table(rows: Sequence[dict[str, Any]]) -> str:
    """The report's per-rank table as plain text."""
    lines = [
        f"{'rank':>5} {'fraction':>9} {'vs stored':>10} {'vs source':>10} {'rel. error':>11} {'PSNR dB':>8}"
    ]
    for row in rows:
        stored = row.get("bytes_vs_stored")
        source = row.get("bytes_vs_source")
        lines.append(
            f"{row['rank']:5d} {row['compression_fraction']:9.2%} "
            f"{'-' if stored is None else f'{stored:.2f}x':>10} "
            f"{'-' if source is None else f'{source:.2f}x':>10} "
            f"{row['relative_error']:11.5f} {row['psnr_db']:8.2f}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- evaluate


def evaluate(
    *,
    store: StoreLocation | str | os.PathLike[str],
    truth: str | os.PathLike[str],
    truth_format: str = "masks",
    frame_map: str | os.PathLike[str] | None = None,
    baselines: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Score ``STORE/masks`` against ground truth with the CDnet 2014 metrics.

    Parameters
    ----------
    truth : path
        ``masks`` format: a folder of binary images and a CSV (``frame_map``, or the
        folder's own ``frame_map.csv``) mapping each image to its frame.  ``cdnet``
        format: a CDnet 2014 video folder (``groundtruth/`` and ``temporalROI.txt``).
    baselines : sequence of {"mog2", "knn"}
        OpenCV background subtractors run on the same stored frames and scored the
        same way (needs the ``baselines`` extra).

    Returns
    -------
    dict
        Method name ("vidsvd", "mog2", "knn") to its scores: recall, specificity,
        FPR, FNR, PWC, precision, F-measure, and the frame count.
    """
    say = log if log is not None else (lambda _message: None)
    video = open_video(store)
    stored_masks = open_derived(video.location, "masks")
    shape = (video.height, video.width)
    if truth_format == "cdnet":
        found = read_cdnet_truth(truth)
        truth_frames = [(frame, found.load(frame)) for frame in found.frames if frame < video.n_frames]
    elif truth_format == "masks":
        truth_frames = read_truth_masks(truth, frame_map=frame_map, shape=shape)
    else:
        raise InvalidParameterError(f"--format must be cdnet or masks, got {truth_format!r}")
    outside = [frame for frame, _ in truth_frames if frame >= video.n_frames]
    if outside:
        raise InvalidParameterError(
            f"ground truth names frame {outside[0]} but the store has {video.n_frames} frames; "
            "check --frame-map and the ingest's --fps"
        )
    wanted = [frame for frame, _ in truth_frames]
    predicted = np.asarray(stored_masks.data[wanted].compute()) > 0
    results = {"vidsvd": _scores_row(predicted, truth_frames)}
    for name in baselines:
        say(f"running the {name} baseline over {video.n_frames} frames")
        found_masks = run_baseline(name, _stored_frames(video), wanted_frames=set(wanted))  # type: ignore[arg-type]
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


def _stored_frames(video: StoredVideo) -> Iterator[npt.NDArray[np.uint8]]:
    step = int(video.frames.chunks[0][0])
    for start in range(0, video.n_frames, step):
        yield from np.asarray(video.frames[start : start + step].compute())


def format_scores(results: dict[str, dict[str, Any]]) -> str:
    """Scores as a plain-text table, one row per method."""
    keys = ("recall", "specificity", "fpr", "fnr", "pwc", "precision", "f_measure")
    lines = [f"{'method':8} " + " ".join(f"{key:>11}" for key in keys)]
    for method, row in results.items():
        cells = " ".join(
            f"{'nan' if row.get(key) is None else format(row[key], '11.4f'):>11}" for key in keys
        )
        lines.append(f"{method:8} {cells}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- apply


def apply(
    *,
    store: StoreLocation | str | os.PathLike[str],
    video: str | os.PathLike[str],
    out: str | os.PathLike[str],
    factors: str | None = None,
    rank: int | None = None,
    threshold: float | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> SeparateSummary:
    """Separate new footage of the same camera with persisted factors, no decomposition.

    The new video is decoded as the stored one was (its frame rate, size, gray) and,
    chunk by chunk, ``foreground = x - U_k (U_k^T x)``: the part of each frame that
    the stored background components do not explain.  Writes ``foreground.mp4``,
    ``compare.mp4`` and sample frames in ``out`` (nothing in the store).  The threshold
    defaults to the one ``separate`` stored, else the ``auto`` rule on the first chunk.

    Raises
    ------
    InvalidParameterError
        The footage's frame size matches neither the stored video's nor its sources'.

    Notes
    -----
    Memory: U_k (P x k float32) plus a few chunks of frames; runs in this process
    (the projection is one small matrix product per chunk).
    """
    started = time.perf_counter()
    say = log if log is not None else (lambda _message: None)
    stored = open_video(store)
    chosen = choose_factors(stored.location, factors)
    k = min(chosen.rank, len(stored.segments)) if rank is None else rank
    if not 1 <= k <= chosen.rank:
        raise InvalidParameterError(f"--rank must be between 1 and {chosen.rank}, got {k}")
    info = probe_video(video)
    allowed = {(stored.width, stored.height)} | {
        (int(src["native_width"]), int(src["native_height"])) for src in stored.attrs["sources"]
    }
    if (info.width, info.height) not in allowed:
        raise InvalidParameterError(
            f"{video} is {info.width}x{info.height} but the factors are for "
            f"{' or '.join(f'{w}x{h}' for w, h in sorted(allowed))} footage; apply needs the same camera"
        )
    if threshold is None:
        recorded = derived_attrs(stored.location, "masks")
        threshold = float(recorded["threshold"]) if recorded and recorded.get("complete") else None
    basis = da.from_array(np.asarray(chosen.U[:, :k].compute(), dtype=np.float32), name=False)
    options = DecodeOptions(width=stored.width, height=stored.height, fps=stored.attrs["ingest"].get("fps"))
    chunk = int(stored.frames.chunks[0][0])
    total = info.estimated_frames(options.fps)
    state: dict[str, float] = {}

    def blocks() -> Blocks:
        bar = tqdm(total=total or None, unit="frame", desc="apply", disable=not progress, file=sys.stderr)
        for frames in decode_blocks(info, options, block_frames=chunk):
            # name=False: a random key instead of hashing every decoded frame
            foreground = apply_factors(da.from_array(frames, chunks=frames.shape, name=False), basis, rank=k)
            if "threshold" not in state:
                sample = foreground[sample_frames(len(frames), _SAMPLE_FRAMES)].compute(scheduler="sync")
                state["threshold"] = threshold if threshold is not None else auto_threshold(sample)
                say(f"threshold: |foreground| > {state['threshold']:.1f} grey levels")
            frame_masks = masks(foreground, threshold=state["threshold"])
            stored_fg, frame_masks = dask.compute(
                to_storage_foreground(foreground), frame_masks, scheduler="sync"
            )
            bar.update(len(frames))
            yield frames, stored_fg, frame_masks
        bar.close()

    outputs = _write_videos(blocks(), Path(out), n_frames=max(total, 1), fps=options.fps or info.fps)
    return SeparateSummary(
        factors=chosen.name,
        rank=k,
        threshold=state.get("threshold", float("nan")),
        outputs=outputs,
        wall_time_s=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------- run, demo


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """Where the main job put things and how long each step took."""

    store: str
    out: str
    steps: dict[str, str]
    timings: dict[str, float]


def run_all(
    videos: Sequence[str | os.PathLike[str]],
    *,
    out: str | os.PathLike[str],
    parameters: SvdParameters,
    store: StoreLocation | str | os.PathLike[str] | None = None,
    fps: float | None = None,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    separate_rank: int | None = None,
    threshold: float | None = None,
    report_ranks: Sequence[int] | None = None,
    cluster: ClusterOptions | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> RunSummary:
    """The main job: ingest, decompose, separate, report, into ``out``.

    The store is ``store`` (a path or fsspec URL such as ``s3://bucket/job.zarr``),
    by default ``out/store.zarr``; images, videos and reports go to the local folder
    ``out``.  Each step is skipped when its complete output exists already, so
    rerunning after a crash or Ctrl-C continues where the job stopped (an
    interrupted ingest resumes).  One cluster serves every step.  With an existing
    scheduler, its workers must see the store: that is checked before the ingest
    (a local store's folder is created first), so a store they cannot reach fails
    in seconds rather than after the ingest.
    """
    say = log if log is not None else (lambda _message: None)
    out_dir = Path(out)
    location = as_location(store) if store is not None else StoreLocation(url=str(out_dir / "store.zarr"))
    steps: dict[str, str] = {}
    timings: dict[str, float] = {}
    if cluster is not None and cluster.scheduler:
        with connect(cluster) as client:
            create_parent_folder(location)
            _require_workers_see_store(client, location, cluster=cluster, must_exist=False)
    started = time.perf_counter()
    state = _video_state(location)
    if state == "complete":
        steps["ingest"] = "skipped (complete)"
    else:
        ingest(
            videos,
            store=location,
            fps=fps,
            scale=scale,
            size=size,
            resume=state == "incomplete",
            progress=progress,
            log=log,
        )
        steps["ingest"] = "resumed" if state == "incomplete" else "done"
    timings["ingest_s"] = time.perf_counter() - started
    with connect(cluster or ClusterOptions()) as client:
        shared = (
            cluster
            if cluster is not None and cluster.scheduler
            else ClusterOptions(scheduler=client.scheduler.address)
        )
        say(f"running on {describe(client)}")
        started = time.perf_counter()
        decomposed = decompose(
            store=location, parameters=parameters, cluster=shared, progress=progress, log=log
        )
        steps["decompose"] = f"reused {decomposed.name}" if decomposed.reused else f"done ({decomposed.name})"
        timings["decompose_s"] = time.perf_counter() - started
        started = time.perf_counter()
        done = derived_attrs(location, "masks")
        if (
            done
            and done.get("complete")
            and done.get("factors") == decomposed.name
            and (separate_rank is None or done.get("rank") == separate_rank)
            and (threshold is None or done.get("threshold") == threshold)
            and (out_dir / "compare.mp4").exists()
        ):
            steps["separate"] = "skipped (complete)"
        else:
            separate(
                store=location,
                out=out_dir,
                factors=decomposed.name,
                rank=separate_rank,
                threshold=threshold,
                cluster=shared,
                progress=progress,
                log=log,
            )
            steps["separate"] = "done"
        timings["separate_s"] = time.perf_counter() - started
        started = time.perf_counter()
        if steps["separate"].startswith("skipped") and _report_is_current(
            out_dir / "report.json", factors=decomposed.name, ranks=report_ranks
        ):
            steps["report"] = "skipped (complete)"
        else:
            report(
                store=location,
                out=out_dir,
                ranks=report_ranks,
                factors=decomposed.name,
                cluster=shared,
                progress=progress,
                log=log,
            )
            steps["report"] = "done"
        timings["report_s"] = time.perf_counter() - started
    return RunSummary(store=str(location), out=str(out_dir), steps=steps, timings=timings)


def _report_is_current(path: Path, *, factors: str, ranks: Sequence[int] | None) -> bool:
    """True when ``report.json`` exists for these factors and (when given) these ranks."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if previous.get("factors", {}).get("name") != factors:
        return False
    return ranks is None or {row["rank"] for row in previous.get("ranks", [])} >= set(ranks)


def _video_state(store: StoreLocation) -> str:
    """``absent``, ``incomplete`` or ``complete`` for the video of a run's store."""
    if not store_exists(store):
        return "absent"
    try:
        open_video(store)
    except StoreIncompleteError:
        return "incomplete"
    except StoreNotFoundError:
        return "absent"
    return "complete"


def demo(
    *,
    out: str | os.PathLike[str],
    spec: SceneSpec | None = None,
    cluster: ClusterOptions | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Write a synthetic scene with ground truth, run the main job on it and score it.

    Returns the scores of :func:`evaluate`; also writes them to ``out/scores.json``.
    """
    say = log if log is not None else (lambda _message: None)
    out_dir = Path(out)
    scene = spec or SceneSpec(width=320, height=240, n_frames=300, fps=10.0, n_objects=5, seed=7)
    video_path = out_dir / "scene.mp4"
    truth_dir = out_dir / "truth"
    if not (truth_dir / "frame_map.csv").exists() or not video_path.exists():
        say(f"writing a synthetic {scene.width}x{scene.height} scene of {scene.n_frames} frames with truth")
        write_scene(scene, video_path, truth_dir=truth_dir, truth_every=1)
    run_all(
        [video_path],
        out=out_dir,
        parameters=SvdParameters(rank=10),
        cluster=cluster,
        progress=progress,
        log=log,
    )
    scores = evaluate(store=out_dir / "store.zarr", truth=truth_dir)
    write_file_atomic(out_dir / "scores.json", json.dumps(scores, indent=2) + "\n")
    return scores
