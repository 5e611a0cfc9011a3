"""Composition: wires storage, cluster and the pure computations into user-level steps.

Every function here is what a notebook user calls and what the command line runs:
each reads its inputs from the store and writes its outputs there, so every step can
be rerun or resumed alone.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import dask
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
from pipelines.decompose import SvdParameters
from pipelines.decompose import decompose as decompose_matrix
from pipelines.matrix import matrix_chunk_bytes, video_matrix
from pipelines.plots import image_png
from pipelines.separate import (
    auto_threshold,
    background_frames,
    background_images,
    foreground_frames,
    masks,
    sample_frames,
    to_storage_foreground,
)
from storage.derived import open_derived, write_derived, write_file_atomic
from storage.errors import InvalidParameterError, StoreNotFoundError
from storage.factors import (
    StoredFactors,
    default_factors_name,
    find_reusable_factors,
    list_factors,
    open_factors,
    write_factors,
)
from storage.store import StoreLocation
from storage.video_array import open_video
from storage.video_decoder import SourceInfo, probe_video
from storage.video_encoder import write_video
from storage.video_ingest import IngestSummary, ingest_videos

__all__ = ["DecomposeSummary", "decompose", "ingest", "probe"]


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
    reused unless ``force``.

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
    with connect(cluster or ClusterOptions()) as client:
        say(f"computing on {describe(client)}")
        link = dashboard_link(client)
        if link and cluster is not None and cluster.scheduler:
            say(f"dashboard: {link}")
        memory_limit = worker_memory_limit(client)
        chunk_bytes = matrix_chunk_bytes(matrix)
        if memory_limit > 0 and chunk_bytes * 2 > memory_limit:
            raise InvalidParameterError(
                f"a worker's memory limit ({_mib(memory_limit)}) cannot hold one chunk of M "
                f"({_mib(chunk_bytes)} as float32, twice that while it is converted); "
                "raise --memory-limit or re-ingest with a smaller --chunk-frames"
            )
        u, s, vt = decompose_matrix(matrix, parameters, memory_limit_bytes=memory_limit or None)
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
            "cluster": describe(client),
            "versions": _versions(),
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


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.0f} MiB"


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("vidsvd", "numpy", "dask", "distributed", "zarr"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


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
    k = chosen.rank if rank is None else rank
    if not 1 <= k <= chosen.rank:
        raise InvalidParameterError(
            f"--rank must be between 1 and {chosen.rank} (factors {chosen.name!r}), got {k}"
        )
    height, width = video.height, video.width
    out_dir = Path(out)
    with connect(cluster or ClusterOptions()) as client:
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
        stored_foreground, frame_masks = client.persist([stored_foreground, frame_masks])
        wait_with_progress(
            client, futures_of([stored_foreground, frame_masks]), description="separate", show=progress
        )
        write_derived(video.location, name="foreground", data=stored_foreground, attrs=attrs)
        write_derived(video.location, name="masks", data=frame_masks, attrs=attrs)
        del stored_foreground, frame_masks
        images = background_images(u, s, vt, rank=k, height=height, width=width, segments=video.segments)
        outputs = _write_backgrounds(out_dir, [np.asarray(i) for i in client.compute(images, sync=True)])
    outputs += _write_videos(video.location, out_dir, fps=video.fps, progress=progress)
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
    """Map foreground grey levels (-255..255) to a visible image: 128 is no change."""
    return np.clip(128 + foreground.astype(np.int32) // 2, 0, 255).astype(np.uint8)


def _write_videos(location: StoreLocation, out_dir: Path, *, fps: float, progress: bool) -> list[str]:
    """Stream foreground.mp4, compare.mp4 and sample PNGs from the stored arrays."""
    video = open_video(location)
    foreground = open_derived(location, "foreground").data
    frame_masks = open_derived(location, "masks").data
    step = int(foreground.chunks[0][0])
    n_frames = video.n_frames
    samples = {int(t) for t in sample_frames(n_frames, 4)}
    sample_files: list[str] = []

    def blocks() -> Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int16], npt.NDArray[np.uint8]]]:
        bar = tqdm(total=n_frames, unit="frame", desc="encode", disable=not progress, file=sys.stderr)
        for start in range(0, n_frames, step):
            stop = min(start + step, n_frames)
            original, fg, mask = dask.compute(
                video.frames[start:stop], foreground[start:stop], frame_masks[start:stop]
            )
            bar.update(stop - start)
            yield original, fg, mask
        bar.close()

    def compare_frames(
        original: npt.NDArray[np.uint8], fg: npt.NDArray[np.int16], mask: npt.NDArray[np.uint8]
    ) -> npt.NDArray[np.uint8]:
        background = np.clip(original.astype(np.int32) - fg, 0, 255).astype(np.uint8)
        return np.concatenate([original, background, _visible_foreground(fg), mask], axis=2)

    def foreground_stream(sink: list[npt.NDArray[np.uint8]]) -> Iterator[npt.NDArray[np.uint8]]:
        start = 0
        for original, fg, mask in blocks():
            visible = _visible_foreground(fg)
            sink.append(compare_frames(original, fg, mask))
            for offset in range(len(fg)):
                if start + offset in samples:
                    name = f"frame-{start + offset:06d}.png"
                    write_file_atomic(out_dir / name, image_png(sink[-1][offset]))
                    sample_files.append(name)
            start += len(fg)
            yield visible

    # One pass over the stored arrays feeds both encoders: compare frames go to a
    # second encoder thread through a small queue.
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
        for original, fg, mask in blocks():
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
