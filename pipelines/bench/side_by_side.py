"""``vidsvd decompose`` side by side with what a user would run instead, and the floors.

On one store, in rounds that alternate the contenders (so that a busy spell of the
machine hits all of them alike), :func:`compare_decompositions` times:

- ``vidsvd``: the whole ``vidsvd decompose --rank K --force`` command, cold, on the
  embedded cluster (defaults);
- ``dask``: the naive dask path, ``da.linalg.svd_compressed(M, k=K, iterator="QR",
  n_power_iter=4, n_oversamples=20, compute=True)`` on ``da.from_zarr`` of the same
  video as float32 columns, with dask's threaded scheduler, in a fresh interpreter;
- ``sklearn``: ``sklearn.utils.extmath.randomized_svd(M, K)`` with its defaults, M
  already in RAM as float32 (its load is not timed), only when M takes at most a
  third of the available memory.

Every contender runs in its own process tree whose peak summed RSS is sampled.  The
floors are measured once: one threaded read of every chunk (the decompression rate),
the float32 GEMM rate of this machine, and the arithmetic of the default method
(``flops / GEMM rate``).  Accuracy: the largest relative difference of the K singular
values of each contender from the factors vidsvd wrote.

Run it with ``vidsvd bench decompose --store STORE``.  vidsvd's runs write their
factors into the store under the name ``bench-side-by-side``, apart from its own.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

from pipelines.bench.process_peak import run_with_peak_rss
from pipelines.bench.scale import read_seconds
from pipelines.decompose import SvdParameters
from pipelines.matrix import video_matrix
from storage.errors import InvalidParameterError
from storage.video_array import open_video

__all__ = ["Contender", "Floors", "compare_decompositions", "format_comparison", "startup_note"]

_FACTORS = "bench-side-by-side"
"""Name of the factors vidsvd writes here (kept apart from the store's own)."""


@dataclass(frozen=True, kw_only=True)
class Contender:
    """Medians over the rounds of one way to decompose the store."""

    name: str
    wall_times_s: tuple[float, ...]
    peak_rss_bytes: int
    max_s_error: float | None

    @property
    def median_s(self) -> float:
        """Median wall time over the rounds."""
        return statistics.median(self.wall_times_s)


@dataclass(frozen=True, kw_only=True)
class Floors:
    """What the hardware allows: one read of M, the GEMM rate, the default method's arithmetic."""

    pixels: int
    frames: int
    read_s: float
    gemm_gflops: float
    reads: int
    flops: float

    @property
    def arithmetic_s(self) -> float:
        """Seconds of the default method's flops at the GEMM rate."""
        return self.flops / (self.gemm_gflops * 1e9)


def compare_decompositions(store: Path, *, rounds: int = 2, rank: int = 10) -> tuple[list[Contender], Floors]:
    """Time vidsvd, naive dask and (when M fits) scikit-learn on one store; see the module."""
    video = open_video(store)
    pixels = video.height * video.width * (3 if video.frames.ndim == 4 else 1)
    fits = pixels * video.n_frames * 4 * 3 <= psutil.virtual_memory().available
    if importlib.util.find_spec("sklearn") is None:
        raise InvalidParameterError("the benchmark needs scikit-learn: pip install -e '.[bench]'")
    names = ["vidsvd", "dask"] + (["sklearn"] if fits else [])
    times: dict[str, list[float]] = {name: [] for name in names}
    peaks: dict[str, int] = dict.fromkeys(names, 0)
    spectra: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="vidsvd-bench-") as scratch:
        for _ in range(rounds):
            for name in names:
                out = Path(scratch) / f"{name}.json"
                elapsed, peak = run_with_peak_rss(_command(name, store, rank=rank, out=out))
                if name != "vidsvd":  # the time of the SVD alone, M in RAM for sklearn
                    result = json.loads(out.read_text())
                    elapsed = result["seconds"]
                    spectra[name] = np.asarray(result["s"])
                times[name].append(elapsed)
                peaks[name] = max(peaks[name], peak)
    reference = _stored_spectrum(store, rank=rank)
    contenders = [
        Contender(
            name=name,
            wall_times_s=tuple(times[name]),
            peak_rss_bytes=peaks[name],
            max_s_error=None if name == "vidsvd" else _max_relative_error(spectra[name], reference),
        )
        for name in names
    ]
    return contenders, _floors(store, pixels=pixels, frames=video.n_frames, rank=rank)


def _max_relative_error(found: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(found - reference) / reference))


def _command(name: str, store: Path, *, rank: int, out: Path) -> list[str]:
    if name == "vidsvd":
        return [
            *[sys.executable, "-m", "pipelines.cli", "decompose", "--store", str(store)],
            *["--rank", str(rank), "--force", "--quiet", "--name", _FACTORS],
        ]
    return [sys.executable, "-m", "pipelines.bench.side_by_side", name, str(store), str(rank), str(out)]


def _stored_spectrum(store: Path, *, rank: int) -> np.ndarray:
    from storage.factors import open_factors

    return np.asarray(open_factors(store, _FACTORS).s.compute(), dtype=np.float64)[:rank]


def _floors(store: Path, *, pixels: int, frames: int, rank: int) -> Floors:
    read_s = read_seconds(open_video(store).frames)
    params = SvdParameters(rank=rank, iteration="fused")
    columns = min(max(20, rank + params.oversample), pixels, frames)
    # sketch and last pass: one product each; every power pass: two
    flops = 2.0 * pixels * frames * columns * (2 + 2 * params.power_iters)
    return Floors(
        pixels=pixels,
        frames=frames,
        read_s=read_s,
        gemm_gflops=_gemm_gflops(),
        reads=params.passes,
        flops=flops,
    )


def _gemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Float32 GEMM rate of this machine with all of numpy's BLAS threads (best of runs)."""
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - started)
    return 2.0 * size**3 / best / 1e9


def startup_note(*, installed: Callable[[str], bool] | None = None) -> str | None:
    """A line on what this installation adds to vidsvd's start, or None.

    ``dask.array`` imports xarray (and with it pandas) at its own import whenever
    xarray is installed, which the quick start's plain install does not do: vidsvd's
    time is its whole command, imports included, while the other contenders are timed
    after theirs.  ``installed`` answers whether a module can be imported (default:
    :func:`importlib.util.find_spec`).
    """
    found = installed or (lambda module: importlib.util.find_spec(module) is not None)
    if not found("xarray"):
        return None
    return (
        "note: xarray is installed here, so dask.array imports it and pandas at its own import,"
        " a part of every vidsvd command (pip install -e . alone does not install them)"
    )


def format_comparison(contenders: Sequence[Contender], floors: Floors) -> str:
    """The table ``vidsvd bench decompose`` prints, with ratios to vidsvd and the floors."""
    ours = next(c for c in contenders if c.name == "vidsvd").median_s
    runs = {c.name: ", ".join(f"{t:.1f}" for t in c.wall_times_s) for c in contenders}
    runs_width = 2 + max(len("runs s"), *(len(text) for text in runs.values()))  # any number of rounds
    lines = [
        f"M: {floors.pixels} pixels x {floors.frames} frames; medians of {len(contenders[0].wall_times_s)}"
        " alternating rounds",
        f"{'method':10s}{'median s':>10s}{'runs s':>{runs_width}s}{'peak GiB':>10s}{'x vidsvd':>10s}"
        f"{'max err s':>11s}",
    ]
    for c in contenders:
        error = "-" if c.max_s_error is None else f"{c.max_s_error:.1e}"
        lines.append(
            f"{c.name:10s}{c.median_s:10.1f}{runs[c.name]:>{runs_width}s}{c.peak_rss_bytes / 2**30:10.2f}"
            f"{c.median_s / ours:10.2f}{error:>11s}"
        )
    lines.append(
        f"floors: one threaded read of M {floors.read_s:.1f} s ({floors.reads} reads: "
        f"{floors.reads * floors.read_s:.1f} s); GEMM {floors.gemm_gflops:.0f} GFLOP/s, "
        f"{floors.flops / 1e12:.2f} TFLOP of default arithmetic: {floors.arithmetic_s:.1f} s; "
        f"vidsvd is {ours / (floors.reads * floors.read_s + floors.arithmetic_s):.1f}x their sum"
    )
    return "\n".join(lines)


def _run_contender(name: str, store: Path, rank: int, out: Path) -> None:
    """One contender in this fresh process: time it, write its seconds and spectrum."""
    if name == "dask":
        import dask
        import dask.array as da

        started = time.perf_counter()
        frames = da.from_zarr(str(store / "video"))
        matrix = frames.reshape(frames.shape[0], -1).T.astype(np.float32)
        with dask.config.set(scheduler="threads"):
            _, s, _ = da.linalg.svd_compressed(
                matrix, k=rank, iterator="QR", n_power_iter=4, n_oversamples=20, compute=True, seed=0
            )
            spectrum = np.asarray(s.compute())
    else:
        from sklearn.utils.extmath import randomized_svd  # type: ignore[import-untyped]

        matrix = np.asarray(video_matrix(open_video(store).frames).compute(scheduler="threads"))
        started = time.perf_counter()
        _, spectrum, _ = randomized_svd(matrix, rank, random_state=0)
    seconds = time.perf_counter() - started
    out.write_text(json.dumps({"seconds": seconds, "s": [float(v) for v in spectrum]}))


if __name__ == "__main__":
    _run_contender(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
