"""Shared fixtures: tiny real videos made through the real encoder, the shared data folder.

Slow tests (marked ``slow``) run when ``--run-slow`` is given or ``CI=true``; the
default run stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow") or os.environ.get("CI", "").lower() == "true":
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (CI=true runs them)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real videos of ../shared/data; skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


def ffmpeg(*args: str) -> None:
    """Run the bundled ffmpeg binary with ``args`` (tests make odd files with it)."""
    import subprocess

    from storage.video_decoder import ffmpeg_executable

    subprocess.run([ffmpeg_executable(), "-v", "error", "-y", *args], check=True, stdin=subprocess.DEVNULL)


def moving_square_frames(n_frames: int, height: int, width: int, *, seed: int = 0):  # type: ignore[no-untyped-def]
    """Frames of a textured background with a bright square crossing it, uint8 (n, y, x)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    background = rng.integers(40, 160, size=(height, width), dtype=np.uint8)
    frames = np.repeat(background[None], n_frames, axis=0)
    side = max(2, min(height, width) // 5)
    for t in range(n_frames):
        x0 = (t * 3) % max(1, width - side)
        frames[t, height // 3 : height // 3 + side, x0 : x0 + side] = 230
    return frames


@pytest.fixture
def make_video(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a tiny real video through the project's encoder; returns (path, frames)."""
    from storage.video_encoder import write_video

    def make(
        name: str = "clip.mkv",
        *,
        n_frames: int = 30,
        height: int = 48,
        width: int = 64,
        fps: float = 10.0,
        codec: str = "ffv1",
        seed: int = 0,
    ):  # type: ignore[no-untyped-def]
        frames = moving_square_frames(n_frames, height, width, seed=seed)
        path = tmp_path / name
        write_video(path, iter(frames), fps=fps, codec=codec)  # type: ignore[arg-type]
        return path, frames

    return make


def tree_digest(folder: Path) -> str:
    """sha256 over every path and file below ``folder``: proves a store was not touched."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
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
