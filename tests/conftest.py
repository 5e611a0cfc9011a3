"""Shared fixtures and hooks: tiny real videos made through the real encoder, the shared data.

Slow tests (marked ``slow``) run when ``--run-slow`` is given or ``CI=true``; the
default run stays fast.  Helpers imported by name are in :mod:`tests.helpers`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import SHARED_DATA, moving_square_frames


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
