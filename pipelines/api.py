"""The public Python API of vidsvd, in one place.

::

    import pipelines.api as vidsvd

    if __name__ == "__main__":  # the embedded cluster's workers re-import this script
        vidsvd.ingest(["clip.mp4"], store="clip.zarr", fps=5, scale=0.5)
        video = vidsvd.open_video("clip.zarr")   # video.frames: lazy (frame, y, x) uint8
        with vidsvd.JobContext() as job:         # one cluster for the steps below
            vidsvd.decompose(store="clip.zarr", parameters=vidsvd.SvdParameters(rank=10), context=job)
            vidsvd.separate(store="clip.zarr", out="clip-out", context=job)
        factors = vidsvd.open_factors("clip.zarr", "randomized-k10")  # lazy U, s, Vt

Every step also runs without a context (it then starts and stops its own cluster).
"""

from __future__ import annotations

from cluster.options import ClusterOptions
from pipelines.decompose import SvdParameters
from pipelines.steps.apply import apply
from pipelines.steps.background import fit_background
from pipelines.steps.context import JobContext
from pipelines.steps.decompose import DecomposeSummary, decompose
from pipelines.steps.evaluate import evaluate
from pipelines.steps.ingest import ingest
from pipelines.steps.job import RunSummary, demo, run
from pipelines.steps.report import report
from pipelines.steps.separate import SeparateSummary, separate
from pipelines.synthetic import SceneSpec
from storage.factors import StoredFactors, open_factors
from storage.video_array import StoredVideo, open_video
from storage.video_decoder import SourceInfo, probe_video
from storage.video_ingest import IngestSummary

__all__ = [
    "ClusterOptions",
    "DecomposeSummary",
    "IngestSummary",
    "JobContext",
    "RunSummary",
    "SceneSpec",
    "SeparateSummary",
    "SourceInfo",
    "StoredFactors",
    "StoredVideo",
    "SvdParameters",
    "apply",
    "decompose",
    "demo",
    "evaluate",
    "fit_background",
    "ingest",
    "open_factors",
    "open_video",
    "probe_video",
    "report",
    "run",
    "separate",
]
