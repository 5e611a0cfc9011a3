"""``vidsvd run`` side by side with OpenCV's background subtractors over the same file.

What a user who wants the moving parts of one video would run instead of vidsvd:
OpenCV's ``cv2.VideoCapture`` reading the file and ``createBackgroundSubtractorMOG2()``
(or ``...KNN()``) at its defaults applied to every color frame.  In rounds that
alternate the contenders (so that a busy spell of the machine hits all of them
alike), :func:`compare_runs` times, each as a whole cold command in its own process
tree whose peak summed RSS is sampled, and counts its CPU time (its own and its
reaped children's: ffmpeg's encoders and decoders too), so that the table shows how
many of the machine's cores each kept busy:

- ``vidsvd run``: ``vidsvd run VIDEO --out FRESH`` with the defaults (ingest,
  decompose, the robust background, separation with its videos, report);
- ``vidsvd run --no-videos``: the same without encoding the three videos;
- ``opencv mog2`` and ``opencv knn``: a fresh interpreter that imports OpenCV, reads
  every frame and applies the subtractor (:mod:`pipelines.bench.opencv_subtractor`;
  its masks are computed and dropped).

Each vidsvd run writes into a fresh folder (nothing is reused), removed afterwards.
Run it with ``vidsvd bench run VIDEO``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipelines.bench.process_peak import busy_cores, measure_command
from storage.errors import InvalidParameterError

__all__ = ["RunContender", "compare_runs", "format_run_comparison"]

CONTENDERS = ("vidsvd run", "vidsvd run --no-videos", "opencv mog2", "opencv knn")
"""The contenders, in the order of the first round (later rounds rotate it)."""

_REFERENCE = "opencv mog2"
"""The contender the ratios are taken against."""


@dataclass(frozen=True, kw_only=True)
class RunContender:
    """One way to separate the video: its wall and CPU times over the rounds, its peak memory.

    ``cpu_times_s`` holds the rounds whose CPU time was reported (all of them on Linux
    and macOS).
    """

    name: str
    wall_times_s: tuple[float, ...]
    peak_rss_bytes: int
    frames: int
    cpu_times_s: tuple[float, ...] = ()

    @property
    def median_s(self) -> float:
        """Median wall time over the rounds."""
        return statistics.median(self.wall_times_s)

    @property
    def median_cpu_s(self) -> float | None:
        """Median CPU time (user and system) over the rounds; None when none was reported."""
        return statistics.median(self.cpu_times_s) if self.cpu_times_s else None

    @property
    def median_cores(self) -> float | None:
        """Median CPU time over median wall time: the cores kept busy on average; None without CPU times."""
        return busy_cores(cpu_s=self.median_cpu_s, wall_s=self.median_s)


def compare_runs(video: Path, *, rounds: int = 3) -> list[RunContender]:
    """Time every contender of the module on ``video``, ``rounds`` alternating rounds.

    Returns
    -------
    list of RunContender
        In the order of :data:`CONTENDERS`.  ``frames`` is the number of frames the
        contender processed (vidsvd: the frames of its store).

    Raises
    ------
    InvalidParameterError
        ``rounds`` below 1.
    RuntimeError
        A contender failed (its error output is in the message).
    """
    if rounds < 1:
        raise InvalidParameterError(f"rounds must be at least 1, got {rounds}")
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    cpu_times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    peaks = dict.fromkeys(CONTENDERS, 0)
    frames = dict.fromkeys(CONTENDERS, 0)
    with tempfile.TemporaryDirectory(prefix="vidsvd-bench-run-") as scratch:
        for round_index in range(rounds):
            shift = round_index % len(CONTENDERS)
            for name in (*CONTENDERS[shift:], *CONTENDERS[:shift]):
                out = Path(scratch) / "out"
                cost = measure_command(_command(name, video, out=out))
                frames[name] = _frames_done(name, out)
                shutil.rmtree(out, ignore_errors=True)
                times[name].append(cost.wall_s)
                if cost.cpu_s is not None:
                    cpu_times[name].append(cost.cpu_s)
                peaks[name] = max(peaks[name], cost.peak_bytes)
    return [
        RunContender(
            name=name,
            wall_times_s=tuple(times[name]),
            peak_rss_bytes=peaks[name],
            frames=frames[name],
            cpu_times_s=tuple(cpu_times[name]),
        )
        for name in CONTENDERS
    ]


def format_run_comparison(contenders: Sequence[RunContender], *, video: Path) -> str:
    """A text table: median and range of the wall times, CPU time and cores, peak memory, ratio to MOG2.

    "cores" is the median CPU time over the median wall time: how many cores the
    contender kept busy on average ("-" where no CPU time was reported).
    """
    reference = next((c.median_s for c in contenders if c.name == _REFERENCE), None)
    rounds = max((len(c.wall_times_s) for c in contenders), default=0)
    lines = [
        f"{video.name}: whole cold commands, medians of {rounds} alternating rounds",
        f"{'contender':<24} {'frames':>7} {'median s':>9} {'range s':>13} {'CPU s':>7} {'cores':>6}"
        f" {'peak MiB':>9} {'x MOG2':>7}",
    ]
    for contender in contenders:
        low, high = min(contender.wall_times_s), max(contender.wall_times_s)
        ratio = f"{contender.median_s / reference:.2f}" if reference else "-"
        cpu, busy = contender.median_cpu_s, contender.median_cores
        cpu_text = "-" if cpu is None else f"{cpu:.1f}"
        cores = "-" if busy is None else f"{busy:.2f}"
        lines.append(
            f"{contender.name:<24} {contender.frames:>7} {contender.median_s:>9.2f}"
            f" {f'{low:.1f}-{high:.1f}':>13} {cpu_text:>7} {cores:>6}"
            f" {contender.peak_rss_bytes / 2**20:>9.0f} {ratio:>7}"
        )
    return "\n".join(lines)


def _command(name: str, video: Path, *, out: Path) -> list[str]:
    if name.startswith("vidsvd"):
        extra = ["--no-videos"] if name.endswith("--no-videos") else []
        return [
            sys.executable,
            "-m",
            "pipelines.cli",
            "run",
            str(video),
            "--out",
            str(out),
            "--quiet",
            *extra,
        ]
    subtractor = name.rsplit(maxsplit=1)[-1]
    return [sys.executable, "-m", "pipelines.bench.opencv_subtractor", subtractor, str(video), str(out)]


def _frames_done(name: str, out: Path) -> int:
    """Frames the contender processed, from what it wrote in ``out``."""
    if name.startswith("vidsvd"):
        from storage.video_array import open_video

        return open_video(out / "store.zarr").n_frames
    return int(json.loads((out / "opencv.json").read_text())["frames"])
