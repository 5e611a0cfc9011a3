"""Each frame's gain against a plate: the light of the view, whatever crosses it.

The robust background model (:mod:`pipelines.background_models`) is a plate b times a
gain g_t per frame.  :func:`frame_gains` measures g_t as the ratio ``x_t[p] / b[p]``
most well-lit pixels agree on, lazily, a task per chunk of frames;
:func:`normalized_frames` divides the frames by their gains.
"""

from __future__ import annotations

import math
from typing import Final

import cv2
import dask.array as da
import numpy as np
import numpy.typing as npt

from pipelines.shapes import require_gray_video
from storage.errors import InvalidParameterError

__all__ = [
    "GAIN_MIN_BACKGROUND",
    "GAIN_RULE",
    "MIN_GAIN",
    "divide_frames",
    "frame_gains",
    "gain_divisors",
    "normalized_frames",
]

GAIN_MIN_BACKGROUND: Final = 16
"""Pixels of the median darker than this do not vote for a frame's gain: their ratio
is dominated by noise and compression."""

MIN_GAIN: Final = 1 / 16
"""Frames darker than this fraction of the plate (a fade to black) are counted as they
are by the robust model's median (:func:`normalized_frames`):
dividing them would blow noise up."""
_GAIN_STRIDE: Final = 7
"""Every 7th pixel (at least) votes for a frame's gain: 11,000 votes for 320x240."""
_GAIN_LOG_BIN: Final = 0.01
"""Width of the bins :func:`frame_gains` counts the log ratios in (1 %)."""
_GAIN_HALF_WINDOW_BINS: Final = 5
"""The agreeing window is this many bins on each side of one (+-5 %)."""
_GAIN_BINS: Final = math.ceil(2 * math.log(16) / _GAIN_LOG_BIN) + 1
_GAIN_MAX_VOTES: Final = 1 << 15
"""At most this many pixels vote (a wider stride on larger frames: every 29th of
1280x720).  The median of the ratios of 32,768 well-lit pixels has a standard error of
about 1.25 / sqrt(32,768) = 0.7 % of their spread, 1e-4 for a sensor noise of 2 grey
levels at 120: far below a grey level.  Measuring the gains was a third of the first
pass's work on 720p with every 7th pixel (130,000 votes)."""
GAIN_RULE: Final = (
    f"the median of the ratios in the densest +-{100 * _GAIN_HALF_WINDOW_BINS * _GAIN_LOG_BIN:.0f} %"
    f" window of at most {_GAIN_MAX_VOTES:,} pixels"
)
"""How :func:`frame_gains` measures a gain, in words built from its constants: fits
record it, so a changed constant changes the record and stored fits are redone."""


def _gain_block(
    block: npt.NDArray[np.uint8], votes: npt.NDArray[np.int64], plate: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    ratios = block.reshape(block.shape[0], -1)[:, votes].astype(np.float32) / plate[None, :]
    return np.array([_agreed_ratio(frame_ratios) for frame_ratios in ratios], dtype=np.float32)


def _agreed_ratio(ratios: npt.NDArray[np.float32]) -> float:
    """The median of the ratios inside the +-5 % window (in log) that holds the most of them."""
    logs = np.log(np.clip(ratios, MIN_GAIN, 1 / MIN_GAIN))
    low = math.log(MIN_GAIN)
    bins = np.minimum((logs - low) / _GAIN_LOG_BIN, _GAIN_BINS - 1).astype(np.intp)
    counts = np.bincount(bins, minlength=_GAIN_BINS)
    cumulative = np.concatenate(([0], np.cumsum(counts)))
    width = 2 * _GAIN_HALF_WINDOW_BINS + 1
    densest = int(np.argmax(cumulative[width:] - cumulative[:-width]))  # window of bins densest..+width
    centre = low + (densest + _GAIN_HALF_WINDOW_BINS + 0.5) * _GAIN_LOG_BIN
    inside = np.abs(logs - centre) <= (_GAIN_HALF_WINDOW_BINS + 0.5) * _GAIN_LOG_BIN
    return float(np.median(ratios[inside]))


def frame_gains(frames: da.Array, plate: npt.NDArray[np.generic]) -> da.Array:
    """Per frame, the ratio ``frame / plate`` most well-lit pixels agree on; lazy, (T,) float32.

    The ratios of the voting pixels are counted in bins of 1 % (in log, from 1/16 to
    16); the median of those inside the densest window of 11 bins (+-5 %) is the gain.
    Where objects cover less than half of the frame it is the median of all ratios up
    to the objects' pull on it, which the window drops.  Where they cover more, the
    median is theirs, but the background's ratios still agree to a few per cent (its
    sensor noise over the plate) while an object's spread with the plate's texture
    under it: a synthetic truck covering 70 % of the frame no longer dimmed the whole
    background to a third in three of its six scored frames (their F 0.01-0.83 ->
    1.0; over the smooth background of the other three its own ratios were the more
    alike, and it still won).  On Video_003 and
    eleven synthetic scenes F moved by at most 0.0002; on real clips the residual of
    the still pixels fell where the gains differed (by up to 12 % on the escalator,
    2 % on an indoor clip with auto exposure).  The window's +-5 % holds a pixel's
    ratio within 2 sigmas of noise of 3 grey levels at 120 (a round choice, not fitted).

    ``plate`` has one value per pixel (any shape of P values, any real dtype).  Frames
    whose plate has no well-lit pixel get gain 1.  The votes: every 7th pixel, or a
    wider stride that keeps them to 32,768; per task a float32 copy of the chunk's
    votes (32,768 x frames).
    """
    require_gray_video(frames)
    values = np.asarray(plate, dtype=np.float32).ravel()
    stride = max(_GAIN_STRIDE, -(-values.size // _GAIN_MAX_VOTES))
    candidates = np.arange(0, values.size, stride)
    votes = candidates[values[candidates] >= GAIN_MIN_BACKGROUND]
    if votes.size == 0:
        return da.ones(frames.shape[0], dtype=np.float32, chunks=frames.chunks[0])
    whole = frames.rechunk({1: -1, 2: -1})
    return whole.map_blocks(
        _gain_block,
        votes,
        values[votes],
        drop_axis=[1, 2],
        dtype=np.float32,
        meta=np.empty((0,), dtype=np.float32),
    )


def normalized_frames(frames: da.Array, gains: npt.NDArray[np.floating]) -> da.Array:
    """The frames divided by their gains, rounded to uint8; lazy, the frames' shape and chunks.

    ``gains`` (T,) as from :func:`frame_gains`; frames whose gain is below
    :data:`MIN_GAIN` are left as they are.  Per task one uint8 copy of a chunk of frames.
    """
    require_gray_video(frames)
    divisors = gain_divisors(gains, n_frames=int(frames.shape[0]))
    lazy_divisors = da.from_array(divisors, chunks=(frames.chunks[0],))
    return da.map_blocks(
        divide_frames,
        frames,
        lazy_divisors[:, None, None],
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), np.uint8),
    )


def gain_divisors(gains: npt.ArrayLike, *, n_frames: int | None = None) -> npt.NDArray[np.float32]:
    """The gains as divisors: float32, 1 where a gain is below :data:`MIN_GAIN` (a fade to black).

    With ``n_frames``, ``gains`` must hold one gain per frame, (T,).

    Raises
    ------
    InvalidParameterError
        ``gains`` of another shape than ``(n_frames,)``.
    """
    values = np.asarray(gains, dtype=np.float32)
    if n_frames is not None:
        values = values.ravel()
        if values.shape != (n_frames,):
            raise InvalidParameterError(f"gains must have shape ({n_frames},), got {values.shape}")
    divisors: npt.NDArray[np.float32] = np.where(values >= MIN_GAIN, values, np.float32(1))
    return divisors


def divide_frames(block: npt.NDArray[np.uint8], divisors: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """(n, y, x) uint8 frames / (n, 1, 1) divisors, rounded and clipped to uint8.

    Each frame is divided by one number, so its 256 possible values are divided once
    into a table (the same float32 arithmetic as dividing the frame: the same bytes)
    and the frame is looked up in it with OpenCV's LUT: no float32 copy of the block.
    """
    frames = np.ascontiguousarray(block)
    out = np.empty_like(frames)
    if frames.size == 0:
        return out
    levels = np.arange(256, dtype=np.uint8)
    for index, divisor in enumerate(np.asarray(divisors, dtype=np.float32).reshape(-1)):
        table = levels / divisor
        np.rint(table, out=table)
        np.clip(table, 0, 255, out=table)
        cv2.LUT(frames[index], table.astype(np.uint8), dst=out[index])
    return out
