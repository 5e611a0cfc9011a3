"""The activity timeline: the share of each frame's pixels the masks call foreground.

In hours of footage this is how a person finds the events: a flat line where nothing
moves, peaks where people and cars pass.  The fraction is computed lazily from the
stored masks (one read of them, which is the smallest array of a separation), the
busiest frames are picked for the report's sample masks, and the timeline is written
as CSV for spreadsheets and plotting tools.  The same read gives each pixel's share of
frames in the foreground: where people go, and where the background was hardly ever
seen (:func:`mostly_foreground`).  Everything here is pure.
"""

from __future__ import annotations

from typing import Final

import dask.array as da
import numpy as np
import numpy.typing as npt

from storage.errors import InvalidParameterError

__all__ = [
    "MOSTLY_FOREGROUND_SHARE",
    "UNSEEN_BACKGROUND_PIXELS",
    "activity_csv",
    "busiest_frames",
    "foreground_fraction",
    "mostly_foreground",
    "pixel_foreground_share",
    "unseen_background_warning",
]

MOSTLY_FOREGROUND_SHARE: Final = 0.9
"""A pixel foreground in more than this share of the frames is "mostly foreground": the
background there was seen in under a tenth of the video.  A passer-by or a car covers
a pixel for a moment; a pixel the masks mark in nine frames of ten is either covered
through nearly the whole clip, or its background value is one the video never shows
(a plate that holds people who stood there: in every frame it differs from the
frame, whoever is there or not)."""

UNSEEN_BACKGROUND_PIXELS: Final = 0.01
"""A separation whose mostly-foreground pixels are more than this share of the frame is
reported with a warning: its masks there are unreliable.  Measured (``vidsvd run``
with defaults): 1.6 % of the pixels on a room where six visitors in turn stood at one
table for 68 % of the clip (the plate holds a ghost of them), 2.8 % on a synthetic
crowd of 30 walkers over 55 % of the frame; at most 0.06 % on the nine other real
videos here (traffic, pedestrians, a parking lot, an escalator, a shop) and on 13
synthetic scenes (light drift, shadows, walkers who stop for 30-60 % of the clip,
swaying foliage, low contrast)."""


def foreground_fraction(masks: da.Array) -> da.Array:
    """The fraction of foreground pixels of every frame, lazily.

    Parameters
    ----------
    masks : dask.array.Array
        (frame, y, x) masks, nonzero where a pixel is foreground.

    Returns
    -------
    dask.array.Array
        (frame,) float64 in [0, 1], chunked like the masks' frame axis.

    Notes
    -----
    One read of the masks; each task holds one chunk of them.  The result holds 8
    bytes per frame.
    """
    return _foreground(masks).mean(axis=(1, 2), dtype=np.float64)


def pixel_foreground_share(masks: da.Array) -> da.Array:
    """The share of frames in which each pixel of ``masks`` (as :func:`foreground_fraction`'s) is foreground.

    Lazy; (y, x) float32 in [0, 1].  One read of the masks, shared with
    :func:`foreground_fraction` when both are computed together; each task holds one
    chunk and a (y, x) uint32 count, and the counts are summed in a tree.
    """
    counts = _foreground(masks).sum(axis=0, dtype=np.uint32)
    return (counts / max(int(masks.shape[0]), 1)).astype(np.float32)


def _foreground(masks: da.Array) -> da.Array:
    """(frame, y, x) masks -> booleans, True where foreground; a one-line error for another shape."""
    if masks.ndim != 3:
        raise InvalidParameterError(f"masks must be (frame, y, x), got shape {masks.shape}")
    return masks > 0


def mostly_foreground(share: npt.ArrayLike) -> float:
    """The share of pixels foreground in more than :data:`MOSTLY_FOREGROUND_SHARE` of the frames.

    ``share`` is (y, x) in memory (:func:`pixel_foreground_share`); 0 for no pixels.
    """
    values = np.asarray(share, dtype=np.float32)
    if values.size == 0:
        return 0.0
    return float(np.count_nonzero(values > MOSTLY_FOREGROUND_SHARE)) / values.size


def unseen_background_warning(unseen: float) -> str | None:
    """The one-line warning for a separation whose mostly-foreground pixels are ``unseen`` of the frame.

    None when they are at most :data:`UNSEEN_BACKGROUND_PIXELS`: nothing to warn of.
    """
    if unseen <= UNSEEN_BACKGROUND_PIXELS:
        return None
    return (
        f"{100 * unseen:.1f} % of the pixels are foreground in over {100 * MOSTLY_FOREGROUND_SHARE:.0f} %"
        " of the frames: the background there was hardly ever seen (something stood or moved there"
        " through nearly the whole clip, or the background plate holds people who stood there), so"
        " the masks there are unreliable; see the report's map of where the foreground is"
    )


def busiest_frames(fraction: npt.ArrayLike, *, count: int) -> list[int]:
    """Up to ``count`` frames of the most foreground, spread over the video, in time order.

    Frames are taken greedily by falling foreground fraction, each at least
    ``T / (2 * count)`` frames from those already taken, so that one long event does
    not fill every sample.  Frames with no foreground are never taken.  O(T log T).
    """
    if count < 1:
        raise InvalidParameterError(f"count must be at least 1, got {count}")
    values = np.asarray(fraction, dtype=np.float64).ravel()
    gap = max(1, values.size // (2 * count))
    taken: list[int] = []
    for frame in np.argsort(-values, kind="stable"):
        if values[frame] <= 0 or len(taken) == count:
            break
        if all(abs(int(frame) - other) >= gap for other in taken):
            taken.append(int(frame))
    return sorted(taken)


def activity_csv(fraction: npt.ArrayLike, *, fps: float) -> str:
    """The timeline as CSV: ``frame,time_s,foreground_fraction``, one row per frame.

    ``time_s`` is ``frame / fps`` (the stored video's rate), 3 decimals; the fraction
    has 6 decimals.  About 30 bytes per frame.
    """
    if not fps > 0:
        raise InvalidParameterError(f"fps must be positive, got {fps}")
    values = np.asarray(fraction, dtype=np.float64).ravel()
    rows = [f"{frame},{frame / fps:.3f},{value:.6f}" for frame, value in enumerate(values)]
    return "\n".join(["frame,time_s,foreground_fraction", *rows]) + "\n"
