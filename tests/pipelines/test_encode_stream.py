"""The streamed encoders end what they read from, however they end (real ffmpeg, tiny frames)."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from pipelines.encode_stream import PREVIEW_CRF, Blocks, write_videos
from storage.errors import InvalidParameterError
from storage.output_folder import OutputFolder

FRAMES_PER_BLOCK = 4
BLOCKS = 3
HEIGHT, WIDTH = 32, 48


class _PressedAfter:
    """A Ctrl-C point that raises once it has been asked ``calls`` times."""

    def __init__(self, calls: int) -> None:
        self.calls_left = calls

    def raise_if_pressed(self) -> None:
        self.calls_left -= 1
        if self.calls_left < 0:
            raise KeyboardInterrupt


class _NeverPressed:
    def raise_if_pressed(self) -> None:
        pass


def _blocks(events: list[str]) -> Blocks:
    """Blocks of a moving square; ``events`` records what the generator went through."""
    rng = np.random.default_rng(0)
    try:
        for index in range(BLOCKS):
            original = rng.integers(90, 110, size=(FRAMES_PER_BLOCK, HEIGHT, WIDTH), dtype=np.uint8)
            original[:, 8:16, 8 * index : 8 * index + 8] = 250
            foreground = original.astype(np.int16) - 100
            mask = (np.abs(foreground) > 50).astype(np.uint8)
            events.append(f"block {index}")
            yield original, foreground, mask
        events.append("exhausted")
    finally:
        events.append("closed")


def test_all_blocks_are_encoded_and_the_generator_ends(tmp_path: Path) -> None:
    events: list[str] = []
    folder = OutputFolder.at(tmp_path / "out")
    written = write_videos(
        _blocks(events), folder, n_frames=FRAMES_PER_BLOCK * BLOCKS, fps=10.0, ctrl_c=_NeverPressed()
    )
    assert events == ["block 0", "block 1", "block 2", "exhausted", "closed"]
    assert folder.foreground_mp4.name in written and folder.compare_mp4.name in written
    for video in (folder.foreground_mp4, folder.compare_mp4):
        settings = video.read_bytes()  # x264 writes its options into the stream
        assert f"crf={PREVIEW_CRF}.0".encode() in settings
        assert b"cabac=0" in settings and b"deblock=0" in settings  # what ultrafast leaves out


def test_a_ctrl_c_between_blocks_closes_the_blocks_before_it_is_raised(tmp_path: Path) -> None:
    # A generator left suspended would go on reading ahead (a dask computation) while
    # the caller closes the cluster under it.
    events: list[str] = []
    folder = OutputFolder.at(tmp_path / "out")
    blocks = _blocks(events)
    with pytest.raises(KeyboardInterrupt):
        write_videos(blocks, folder, n_frames=FRAMES_PER_BLOCK * BLOCKS, fps=10.0, ctrl_c=_PressedAfter(2))
    assert inspect.getgeneratorstate(blocks) == inspect.GEN_CLOSED
    assert events[-1] == "closed" and "exhausted" not in events
    assert events[0] == "block 0"
    assert not folder.foreground_mp4.exists() and not folder.compare_mp4.exists()


def test_an_encoder_failure_also_closes_the_blocks(tmp_path: Path) -> None:
    events: list[str] = []
    folder = OutputFolder.at(tmp_path / "out")

    def blocks_then_a_wrong_shape() -> Blocks:
        inner = _blocks(events)
        try:
            yield next(inner)
            original, foreground, mask = next(inner)
            yield original[:, :8], foreground[:, :8], mask[:, :8]  # a frame size that changed
        finally:
            inner.close()

    blocks = blocks_then_a_wrong_shape()  # held here, so only write_videos can close it
    with pytest.raises(InvalidParameterError, match="frame shape"):
        write_videos(
            blocks,
            folder,
            n_frames=FRAMES_PER_BLOCK * BLOCKS,
            fps=10.0,
            ctrl_c=_NeverPressed(),
        )
    assert inspect.getgeneratorstate(blocks) == inspect.GEN_CLOSED
    assert events[-1] == "closed"
    assert not folder.foreground_mp4.exists()
