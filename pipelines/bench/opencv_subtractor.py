"""The OpenCV contender of ``vidsvd bench run``, run as its own process.

``python -m pipelines.bench.opencv_subtractor {mog2|knn} VIDEO OUT`` reads every frame
of VIDEO with ``cv2.VideoCapture`` and applies ``cv2.createBackgroundSubtractorMOG2()``
(or ``KNN``) at its defaults, as a user of OpenCV would, then writes ``OUT/opencv.json``
with the number of frames and the seconds spent.  It imports OpenCV and the standard
library only, so its process costs what such a user's script costs.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2

__all__ = ["subtract"]


def subtract(subtractor: str, video: Path, out: Path) -> int:
    """Every frame of ``video`` through the subtractor; returns the number of frames.

    Raises
    ------
    ValueError
        An unknown subtractor.
    RuntimeError
        OpenCV cannot open the video or reads no frame of it.
    """
    started = time.perf_counter()
    if subtractor not in ("mog2", "knn"):
        raise ValueError(f"subtractor must be mog2 or knn, got {subtractor!r}")
    model: cv2.BackgroundSubtractor = (
        cv2.createBackgroundSubtractorMOG2() if subtractor == "mog2" else cv2.createBackgroundSubtractorKNN()
    )
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise RuntimeError(f"OpenCV cannot open {video}")
    frames = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        model.apply(frame)
        frames += 1
    capture.release()
    if frames == 0:
        raise RuntimeError(f"OpenCV read no frame of {video}")
    out.mkdir(parents=True, exist_ok=True)
    seconds = time.perf_counter() - started
    (out / "opencv.json").write_text(json.dumps({"frames": frames, "seconds": seconds}))
    return frames


if __name__ == "__main__":
    subtract(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
