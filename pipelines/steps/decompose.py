"""The decompose step: a truncated SVD of the stored video's M, factors persisted in the store."""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import futures_of

from cluster.client import describe, peak_worker_memory
from pipelines.background_models import FITTED_MODELS
from pipelines.decompose import SvdParameters, auto_iteration
from pipelines.decompose import decompose as decompose_matrix
from pipelines.fused_svd import fused_randomized_svd
from pipelines.gram_svd import (
    GRAM_PASSES,
    choose_method,
    gram_exact_svd,
    gram_fits,
    gram_frames_per_task,
)
from pipelines.matrix import matrix_chunk_bytes, video_matrix
from pipelines.planning import merged_chunk_limit, plan_decomposition
from pipelines.steps.context import JobContext, step_context
from pipelines.steps.recompute import recomputed_if_inconsistent
from storage.errors import InvalidParameterError
from storage.factor_lookup import find_reusable_factors
from storage.factors import check_factors_name, default_factors_name, write_factors
from storage.layout import GRAM_EIGENVALUES_ATTR, GRAM_TRACE_ATTR
from storage.store import StoreLocation
from storage.video_array import StoredVideo, open_video
from storage.writer_lock import writer_lock

__all__ = ["DecomposeSummary", "decompose"]

_RANDOMIZED_ONLY = ("power_iters", "oversample", "seed", "iteration")
"""Options of the randomized method, not recorded with exact factors."""


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
    context: JobContext | None = None,
) -> DecomposeSummary:
    """Truncated SVD of the stored video's matrix M on the context's cluster.

    Reads ``STORE/video`` (never the source video), builds the lazy float32 matrix M
    (pixel, frame), decomposes it with ``parameters``, and writes U, s, Vt to
    ``STORE/factors/NAME`` with their provenance, ``complete`` last.  Complete
    factors of the same method and parameters with at least the asked rank are
    reused unless ``force``; then no cluster is started.  On an existing scheduler
    every worker first checks that it can use the store.

    Notes
    -----
    Memory: the workers hold one chunk of M per task (merged video chunks, see
    :func:`pipelines.planning.plan_decomposition`) plus the (P, rank + oversample)
    panels of the randomized method.  The exact method takes the frames' Gram matrix
    where :func:`pipelines.gram_svd.gram_fits` (uint8, at most
    :data:`pipelines.gram_svd.GRAM_MAX_FRAMES` frames): two groups of frames and a block
    of G per task, groups of at most half a merged chunk's bytes; otherwise TSQR,
    which needs about ``n_blocks * T**2 * 8`` bytes and a float32 copy of M, and is
    refused when that exceeds the cluster's memory.  This process holds only s.
    """
    started = time.perf_counter()
    video = open_video(store)
    matrix = video_matrix(video.frames)
    n_pixels, n_frames = (int(n) for n in matrix.shape)
    parameters.validate(n_pixels=n_pixels, n_frames=n_frames)
    # ``auto`` is answered by stored exact factors or randomized ones of its options, and
    # computes the exact method where the frames' Gram matrix is the cheaper (short videos)
    requested = parameters
    parameters = choose_method(parameters, n_pixels=n_pixels, n_frames=n_frames, dtype=video.frames.dtype)
    factors_name = name or default_factors_name(parameters.method, parameters.rank)
    if factors_name in FITTED_MODELS:
        raise InvalidParameterError(
            f"the name {factors_name!r} is kept for the {factors_name} background model's factors;"
            " choose another --name"
        )
    with step_context(context) as job, writer_lock(video.location, step="decompose"):
        if not force:
            found = find_reusable_factors(
                video.location, parameters=requested, video_fingerprint=video.fingerprint, name=name
            )
            if found is not None:
                answers = (
                    "same method and parameters"
                    if requested.method != "auto"
                    else f"{found.method} answers auto"
                )
                job.say(
                    f"reusing factors {found.name!r} (rank {found.rank} >= {parameters.rank}, {answers}): "
                    "nothing to compute; pass --force to recompute"
                )
                return DecomposeSummary(
                    name=found.name,
                    reused=True,
                    rank=found.rank,
                    wall_time_s=time.perf_counter() - started,
                    singular_values=[float(v) for v in found.s[: parameters.rank].compute()],
                )
        check_factors_name(video.location, factors_name, overwrite=force)
        singular_values = recomputed_if_inconsistent(
            lambda: _compute_and_write(
                job, video, parameters=parameters, factors_name=factors_name, force=force, started=started
            ),
            what="the SVD",
            say=job.say,
        )
    return DecomposeSummary(
        name=factors_name,
        reused=False,
        rank=parameters.rank,
        wall_time_s=time.perf_counter() - started,
        singular_values=singular_values,
    )


def _compute_and_write(
    job: JobContext,
    video: StoredVideo,
    *,
    parameters: SvdParameters,
    factors_name: str,
    force: bool,
    started: float,
) -> list[float]:
    """Plan, compute and write the factors (the writer lock is held); their singular values.

    Raises :class:`storage.errors.InconsistentResultError`, having written nothing,
    when a pass's partial sums do not add up.
    """
    matrix = video_matrix(video.frames)
    n_pixels, n_frames = (int(n) for n in matrix.shape)
    client = job.computing_on(video.location)
    cluster = job.cluster_size()
    threads = max(cluster.threads, 1)
    plan = plan_decomposition(
        method=parameters.method,
        video_chunk_frames=int(video.frames.chunks[0][0]),
        n_video_chunks=len(video.frames.chunks[0]),
        frame_pixels=int(np.prod(video.frames.shape[1:], dtype=np.int64)),
        matrix_chunk_bytes=matrix_chunk_bytes(matrix),
        matrix_bytes=int(matrix.nbytes),
        cluster=cluster,
    )
    parameters = dataclasses.replace(parameters, iteration=auto_iteration(params=parameters))
    algorithm: str = parameters.method
    if parameters.method == "exact":
        # the Gram where it fits (uint8, few frames), dask's TSQR of M otherwise
        fits = gram_fits(n_pixels=n_pixels, n_frames=n_frames, dtype=video.frames.dtype)
        algorithm = "gram" if fits else "tsqr"
    if algorithm == "gram":
        # the exact SVD from M^T M, computed exactly; a pair task holds two uint8 groups
        frame_bytes = int(np.prod(video.frames.shape[1:], dtype=np.int64))
        group_limit = merged_chunk_limit(cluster.worker_memory_bytes) // 2 // max(frame_bytes, 1)
        (u, s, vt), energies = gram_exact_svd(
            job.frames_to_read(video),
            parameters,
            keep_in_memory=plan.keep_in_memory,  # held frames; else each pair reads its own
            frames_per_task=(
                frames_per_group := gram_frames_per_task(
                    n_frames=n_frames,
                    video_chunk_frames=int(video.frames.chunks[0][0]),
                    threads=threads,
                    max_group_frames=max(group_limit, 1),
                )
            ),
        )
    elif parameters.method == "randomized" and parameters.iteration == "fused":
        # M fits (plan.keep_in_memory, the same rule): the stored uint8 frames held after
        # one read, for this pass and the later steps' (a quarter of float32's memory;
        # the kernels convert a tile at a time in cache, which is faster than reading
        # float32: 0.17 against 0.19 s for 68 frames of 720p, measured)
        u, s, vt = fused_randomized_svd(
            job.frames_to_read(video),
            parameters,
            keep_in_memory=plan.keep_in_memory,
            frames_per_task=plan.frames_per_chunk,  # chunks grouped per task, not merged
            groups_per_chain=plan.groups_per_chain,
        )
    else:
        if plan.frames_per_chunk is not None:
            matrix = video_matrix(video.frames, frames_per_chunk=plan.frames_per_chunk)
        u, s, vt = decompose_matrix(
            matrix,
            parameters,
            memory_limit_bytes=plan.cluster_memory_bytes,
            threads=threads,
            keep_in_memory=plan.keep_in_memory,
        )
    u, s, vt = client.persist([u, s, vt])
    if algorithm == "gram":
        energies = client.persist(energies)
    passes = GRAM_PASSES if algorithm == "gram" else parameters.passes
    if parameters.method == "randomized":
        job.say(f"randomized SVD, {parameters.iteration} iteration: {passes} reads of the video")
    elif algorithm == "gram":
        job.say(f"exact SVD from the frames' Gram matrix: {passes} reads of the video")
    job.wait(futures_of([u, s, vt]), description=f"decompose ({parameters.method})")
    # what ran: the randomized method's options and task layout only where they applied
    applied = {
        key: value
        for key, value in parameters.as_attrs().items()
        if parameters.method == "randomized" or key not in _RANDOMIZED_ONLY
    }
    layout: dict[str, Any] = {"frames_per_group": frames_per_group} if algorithm == "gram" else {}
    if algorithm != "gram":
        layout["matrix_frames_per_chunk"] = plan.frames_per_chunk or int(video.frames.chunks[0][0])
    if parameters.method == "randomized":
        layout["groups_per_chain"] = plan.groups_per_chain
    provenance: dict[str, Any] = {
        **applied,
        "passes": passes,
        "algorithm": algorithm,
        "video_fingerprint": video.fingerprint,
        "n_pixels": n_pixels,
        "n_frames": n_frames,
        "wall_time_s": round(time.perf_counter() - started, 3),
        "peak_worker_memory": peak_worker_memory(client),
        "kept_in_memory": plan.keep_in_memory,
        **layout,
        "cluster": describe(client),
    }
    if algorithm == "gram":
        # ||M||^2 and s_i^2 in float64: the report's errors without a pass over M
        trace, *eigenvalues = (float(value) for value in energies.compute())
        provenance[GRAM_TRACE_ATTR], provenance[GRAM_EIGENVALUES_ATTR] = trace, eigenvalues
    write_factors(video.location, name=factors_name, U=u, s=s, Vt=vt, attrs=provenance, overwrite=force)
    singular_values = [float(v) for v in s.compute()]
    if parameters.method == "randomized":
        _warn_of_zero_components(singular_values)
    return singular_values


def _warn_of_zero_components(singular_values: list[float]) -> None:
    """Warn when components after a non-zero first one came back as exact zeros.

    The randomized SVD returns zeros for directions it cannot tell from float32
    rounding: none are left (fewer independent frames than the rank), or they are
    weaker than about 5e-4 of the first after the power iterations (a bright, nearly
    still scene: each pass's basis holds them at (s_i / s_1)^4 of the first).  The
    exact method resolves the second kind.  The factors are written either way; the
    report measures their true error.
    """
    zeros = [index for index, value in enumerate(singular_values) if value == 0.0]
    if not zeros or singular_values[0] <= 0.0:
        return
    warnings.warn(
        f"components {zeros[0] + 1}-{len(singular_values)} of {len(singular_values)} came back as zeros: "
        "the video has no more independent directions, or they are below about 5e-4 of the first, "
        "which the randomized method cannot resolve in float32; use --method exact or a lower --rank",
        RuntimeWarning,
        stacklevel=2,
    )
