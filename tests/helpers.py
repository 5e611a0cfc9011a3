"""Helpers the tests share: paths, tiny real videos, the command line in process, laziness.

Fixtures and pytest hooks live in ``conftest.py``; everything a test imports by name
lives here (``from tests.helpers import ...``).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import dask
import numpy as np
import pytest

if TYPE_CHECKING:
    from pipelines.synthetic import SceneSpec

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def ffmpeg(*args: str) -> None:
    """Run the bundled ffmpeg binary with ``args`` (tests make odd files with it)."""
    from storage.video_decoder import ffmpeg_executable

    subprocess.run([ffmpeg_executable(), "-v", "error", "-y", *args], check=True, stdin=subprocess.DEVNULL)


def moving_square_frames(n_frames: int, height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """Frames of a textured background with a bright square crossing it, uint8 (n, y, x)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(40, 160, size=(height, width), dtype=np.uint8)
    frames = np.repeat(background[None], n_frames, axis=0)
    side = max(2, min(height, width) // 5)
    for t in range(n_frames):
        x0 = (t * 3) % max(1, width - side)
        frames[t, height // 3 : height // 3 + side, x0 : x0 + side] = 230
    return frames


def ingested_scene(spec: SceneSpec, folder: Path, *, name: str = "scene") -> tuple[Path, Path]:
    """Encode the synthetic scene as ``folder/NAME.mp4`` and ingest it into ``folder/NAME.zarr``.

    Returns (video, store); the ingest runs through the command line, as a user's would.
    """
    from pipelines.cli import main
    from pipelines.synthetic import write_scene

    video, store = folder / f"{name}.mp4", folder / f"{name}.zarr"
    write_scene(spec, video)
    assert main(["ingest", str(video), "--store", str(store), "--quiet"]) == 0
    return video, store


def tree_digest(folder: Path) -> str:
    """sha256 over every path and file below ``folder``: proves a store was not touched.

    The root's consolidated metadata is left out: it is a snapshot of the other
    files' metadata that every writing command refreshes when it ends, also when it
    refused to write (a snapshot of the same files, or of files copied in behind
    vidsvd's back).
    """
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path == folder / "zarr.json":
            root = json.loads(path.read_bytes())
            root.pop("consolidated_metadata", None)
            digest.update(json.dumps(root, sort_keys=True).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``vidsvd ARGV`` in process; return (exit status, stdout, stderr)."""
    from pipelines.cli import main

    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        status = int(exc.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    """stderr is exactly one line, an error, no traceback, containing every fragment."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert "error" in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _refuse_to_compute(*args: object, **kwargs: object) -> None:
    raise AssertionError("computed: a lazy function must build a graph, not compute it")


@contextmanager
def raise_if_dask_computes() -> Iterator[None]:
    """Fail the test if anything inside the block computes a dask graph (as xarray's helper)."""
    with dask.config.set(scheduler=_refuse_to_compute):
        yield


def filled_to_one_edge(masks: np.ndarray) -> np.ndarray:
    """The reference of ``fill_holes(masks, one_edge=True)``, region by region with scipy.

    Each 4-connected region of background (``scipy.ndimage.label``'s default) stays
    background when it has pixels on two or more of the frame's four edges; every other
    pixel is foreground.  Slow and plain, for comparison.
    """
    from scipy import ndimage

    filled = np.empty(masks.shape, dtype=bool)
    for index, frame in enumerate(masks):
        labels, n_regions = ndimage.label(~frame)
        keep = np.zeros(n_regions + 1, dtype=bool)
        for region in range(1, n_regions + 1):
            inside = labels == region
            edges = (inside[0].any(), inside[-1].any(), inside[:, 0].any(), inside[:, -1].any())
            keep[region] = sum(edges) >= 2
        filled[index] = ~keep[labels]
    return filled


def python_words(script: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """Run ``script`` in a fresh Python from the repository (``python -c``); its stdout's words.

    For what only a new process shows: what an import loads, settings read at start.
    """
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO, env=env, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return done.stdout.split()
