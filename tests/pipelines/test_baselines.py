"""OpenCV MOG2 / KNN baselines: masks of the wanted frames, streaming, shadows, missing OpenCV."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import pipelines.baselines as baselines
from pipelines.baselines import run_baseline
from storage.errors import InvalidParameterError

HEIGHT, WIDTH, SIDE = 40, 48, 8


def square_video(n_frames: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A still noisy texture, then a bright square jumping right: frames and truth masks.

    The square appears at frame 30 (the subtractors first learn the empty scene) and
    moves by its own width each frame, so no pixel stays covered long enough to be
    learnt as background.
    """
    rng = np.random.default_rng(0)
    background = rng.integers(60, 140, size=(HEIGHT, WIDTH)).astype(np.int16)
    frames, truths = [], []
    for t in range(n_frames):
        frame = background + rng.normal(0, 2, size=background.shape).round().astype(np.int16)
        truth = np.zeros((HEIGHT, WIDTH), dtype=bool)
        if t >= 30:
            x0 = (SIDE * t) % (WIDTH - SIDE)
            frame[15 : 15 + SIDE, x0 : x0 + SIDE] = 240
            truth[15 : 15 + SIDE, x0 : x0 + SIDE] = True
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
        truths.append(truth)
    return frames, truths


@pytest.mark.parametrize("name", ["mog2", "knn"])
def test_baselines_find_the_moving_square(name: str) -> None:
    frames, truths = square_video(60)
    wanted = {40, 50, 59, 1000}  # 1000 is past the end: simply absent
    masks = run_baseline(name, iter(frames), wanted_frames=wanted)  # type: ignore[arg-type]
    assert set(masks) == {40, 50, 59}
    for t, mask in masks.items():
        assert mask.dtype == np.bool_
        assert mask.shape == (HEIGHT, WIDTH)
        truth = truths[t]
        assert np.mean(mask[truth]) > 0.8  # most of the square found
        assert np.mean(mask[~truth]) < 0.05  # little else


def test_streaming_stops_after_the_last_wanted_frame() -> None:
    frames, _ = square_video(10)

    def stream() -> Iterator[np.ndarray]:
        yield from frames[:6]
        raise AssertionError("read past the last wanted frame")

    masks = run_baseline("mog2", stream(), wanted_frames={2, 5})
    assert set(masks) == {2, 5}
    assert run_baseline("knn", stream(), wanted_frames=set()) == {}


class _FakeSubtractor:
    """Answers like OpenCV: 0 background, 127 shadow, 255 foreground."""

    def apply(self, frame: np.ndarray) -> np.ndarray:
        out = np.zeros(frame.shape[:2], dtype=np.uint8)
        out[0, 0] = 255
        out[0, 1] = 127
        return out


def test_shadows_count_as_background(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baselines, "_subtractor", lambda name: _FakeSubtractor())
    masks = run_baseline("mog2", [np.zeros((2, 3), np.uint8)], wanted_frames={0})
    np.testing.assert_array_equal(masks[0], [[True, False, False], [False, False, False]])


def test_frames_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baselines, "_subtractor", lambda name: _FakeSubtractor())
    with pytest.raises(InvalidParameterError, match="frame 1"):
        run_baseline("knn", [np.zeros((2, 3), np.uint8), np.zeros((2, 3))], wanted_frames={5})
    with pytest.raises(InvalidParameterError, match="frame 0"):
        run_baseline("knn", [np.zeros((2, 3, 2), np.uint8)], wanted_frames={5})


def test_unknown_baseline() -> None:
    with pytest.raises(InvalidParameterError, match="unknown baseline"):
        run_baseline("vibe", [], wanted_frames={0})  # type: ignore[arg-type]
