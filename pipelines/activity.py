"""The activity timeline: the share of each frame's pixels the masks call foreground.

In hours of footage this is how a person finds the events: a flat line where nothing
moves, peaks where people and cars pass.  The fraction is computed lazily from the
stored masks (one read of them, which is the smallest array of a separation), the
busiest frames are picked for the report's sample masks, and the timeline is written
as CSV for spreadsheets and plotting tools.  Everything here is pure.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import numpy.typing as npt

from storage.errors import InvalidParameterError

__all__ = ["activity_csv", "busiest_frames", "foreground_fraction"]


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
    if masks.ndim != 3:
        raise InvalidParameterError(f"masks must be (frame, y, x), got shape {masks.shape}")
    return (masks > 0).mean(axis=(1, 2), dtype=np.float64)


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
