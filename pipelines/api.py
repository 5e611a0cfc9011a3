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

import functools
import re
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from cluster.options import ClusterOptions
from pipelines.decompose import SvdParameters
from pipelines.steps import apply as _apply
from pipelines.steps import background as _background
from pipelines.steps import decompose as _decompose
from pipelines.steps import demo as _demo
from pipelines.steps import evaluate as _evaluate
from pipelines.steps import ingest as _ingest
from pipelines.steps import job as _job
from pipelines.steps import report as _report
from pipelines.steps import separate as _separate
from pipelines.steps.context import JobContext
from pipelines.steps.decompose import DecomposeSummary
from pipelines.steps.job import RunSummary
from pipelines.steps.separate import SeparateSummary
from pipelines.synthetic import SceneSpec
from storage.errors import VidsvdError
from storage.factors import StoredFactors, open_factors
from storage.video_array import StoredVideo, open_video
from storage.video_ingest import IngestSummary
from storage.video_probe import SourceInfo, probe_video

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
    "in_python_words",
    "ingest",
    "open_factors",
    "open_video",
    "probe_video",
    "report",
    "run",
    "separate",
]


_P = ParamSpec("_P")
_R = TypeVar("_R")

_PYTHON_WORDS = {
    "--overwrite": "overwrite=True",
    "--resume": "resume=True",
    "--force": "force=True",
    "--foreground": "keep_foreground=True",
    "--masks-video": "masks_video=True",
    "--no-videos": "make_videos=False",
    "--quiet": "progress=False",
    "--plate-window": "plate_window_s",
}
"""Flags whose Python spelling is not just the parameter's name."""

_FLAG = re.compile(r"(`[^`]*`)|--([a-z][a-z-]*)")


def in_python_words(message: str) -> str:
    """A message written for the command line, with its flags as Python parameters.

    ``pass --overwrite to replace it`` becomes ``pass overwrite=True to replace it``
    and ``--rank must be ...`` becomes ``rank must be ...``; a quoted command
    (between backticks) is kept as it is, since it is meant for the shell.
    """

    def python(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1)
        flag = f"--{match.group(2)}"
        return _PYTHON_WORDS.get(flag, match.group(2).replace("-", "_"))

    return _FLAG.sub(python, message)


def _python_errors(step: Callable[_P, _R]) -> Callable[_P, _R]:
    """``step`` whose user errors name Python parameters instead of command-line flags."""

    @functools.wraps(step)
    def called(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return step(*args, **kwargs)
        except VidsvdError as exc:
            raise type(exc)(in_python_words(str(exc))).with_traceback(exc.__traceback__) from None

    return called


apply = _python_errors(_apply.apply)
decompose = _python_errors(_decompose.decompose)
demo = _python_errors(_demo.demo)
evaluate = _python_errors(_evaluate.evaluate)
fit_background = _python_errors(_background.fit_background)
ingest = _python_errors(_ingest.ingest)
report = _python_errors(_report.report)
run = _python_errors(_job.run)
separate = _python_errors(_separate.separate)
