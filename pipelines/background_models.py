"""Robust background models, out of core: the exact temporal median, and a gain-corrected one.

Plain SVD fits the background by squared error, so whatever moves often (people who
walk the same path, a group that lingers) leaks into it.  A per-pixel temporal median
ignores anything present in fewer than half of the frames.

``median``
    The exact per-pixel temporal median b (the lower median, the value of rank
    ``(T - 1) // 2``), counted (:mod:`pipelines.median_counts`) in a window of 16
    values around the median of :data:`GAIN_SAMPLE_FRAMES` frames: one read of the
    uint8 video, no float copy, and per task 18 counts per pixel (P x 18 uint32: 66 MB
    at 1280x720), whatever the number of frames; two more reads of the few pixels
    whose median lies outside their window.  The background of frame t is b.
``robust``
    A plate b times a gain per frame, ``g_t`` the ratio ``x_t[p] / b[p]`` that most
    well-lit pixels (b >= 16) agree on (:mod:`pipelines.frame_gains`): slow
    illumination changes (clouds, auto exposure) move the background with them
    instead of becoming foreground, and moving objects do not move the gain unless
    they cover most of the frame with ratios more alike than the background's.  The
    plate is the exact median of the frames divided by their gains, not of the frames themselves: under a
    changing illumination the plain median of a pixel is the value of whichever frame
    has the median rank there, and a person passing over the pixel shifts that rank,
    so the plain plate is off by a fraction of the illumination's range (measured on
    a synthetic scene whose light varies by +-40 %: background residuals of 5 to 13
    grey levels against its sensor noise of 3, F 0.92; with the gains divided out
    first, 3 and F 0.999).  Two reads: the counts of the median of the frames divided
    by their gains against the median of a sample of frames (:data:`GAIN_SAMPLE_FRAMES`;
    its own error is that of each pixel, and the median over pixels washes it out),
    in windows around that sample median -- the pass measures those gains chunk by
    chunk from the chunks it counts -- and the gains against the plate; as for the
    median, two more reads of the pixels that missed their window.

Both are rank-1 backgrounds ``b g^T`` and are returned as SVD-style factors U (P, 1),
s (1,), Vt (1, T) (``U = b/|b|``, ``s = |b| |g|``, ``Vt = g/|g|``), so separate, report
and apply use them as they use the SVD's.  Each is fitted on its own to every window
of :func:`plate_windows` (each source video, and within a long one each stretch of
at most :data:`PLATE_WINDOW_S` seconds): one component per window, blended with its
neighbours' between the windows' middle frames (:func:`window_factors`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Final, NamedTuple

import dask.array as da
import numpy as np
import numpy.typing as npt

from pipelines.masks import sample_frames
from pipelines.shapes import require_gray_video
from storage.errors import InvalidParameterError

__all__ = [
    "BACKGROUND_MODELS",
    "DEFAULT_MODEL",
    "FITTED_MODELS",
    "GAIN_SAMPLE_FRAMES",
    "MIN_WINDOW_FRAMES",
    "PLATE_BLEND",
    "PLATE_WINDOW_S",
    "RankOneBackground",
    "checked_plate_window",
    "chosen_model",
    "plate_windows",
    "rank_one_factors",
    "sample_plate",
    "shown_windows",
    "window_factors",
    "window_label",
]

BACKGROUND_MODELS: Final = ("robust", "median", "svd")
"""Models of the background; ``svd`` is the plain truncated SVD (the notebook's)."""

FITTED_MODELS: Final = ("robust", "median")
"""Models fitted by this module; their factors are stored under the model's name."""

DEFAULT_MODEL: Final = "robust"
"""The model when none is named and no SVD factors or rank are asked for."""


def chosen_model(model: str | None, *, svd_options_given: bool) -> str:
    """The background model to use.

    ``model`` when given; else ``svd`` when SVD factors or a rank were named (they
    only make sense for it); else :data:`DEFAULT_MODEL`.

    Raises
    ------
    InvalidParameterError
        An unknown ``model``, or SVD options given with ``median`` or ``robust``.
    """
    if model is None:
        return "svd" if svd_options_given else DEFAULT_MODEL
    if model not in BACKGROUND_MODELS:
        raise InvalidParameterError(f"model must be one of {', '.join(BACKGROUND_MODELS)}, got {model!r}")
    if model != "svd" and svd_options_given:
        raise InvalidParameterError(
            f"factors and rank choose SVD factors, which the {model} model does not use;"
            " drop them, or choose the svd model"
        )
    return model


GAIN_SAMPLE_FRAMES: Final = 64
"""Frames, spread over the video, whose per-pixel median is the plate of the first gains.
Its error at a pixel, from the illumination and from objects on the sampled frames, is
the pixel's own; the median over 11,000 or more voting pixels of each frame washes it
out (measured: the same F to 0.001 with 0, 1 or 2 more rounds of refinement).  Memory:
that many frames of uint8 in one task (59 MB at 1280x720)."""
_PLATE_BANDS: Final = 8
"""Bands of image rows :func:`sample_plate` sorts in separate tasks (threads work in parallel)."""


PLATE_WINDOW_S: Final = 600.0
"""Longest stretch of a video, in seconds, that one plate serves (10 minutes).

Over hours the light is not one plate times a gain: the sun moves the shade of
buildings across the ground, lamps light one part of the view at dusk.  A plate per
window follows that.  The window must be long against the stops a median sees
through (anything present for less than half of it stays out of the plate: a car at a
red light, a person who waits, for up to 5 minutes) and short against the sun's
motion (2.5 degrees in 10 minutes: the edge of a building's shade moves a few
pixels).  Clips of up to 10 minutes, and so every clip the masks were measured on,
get one plate, as before."""

MIN_WINDOW_FRAMES: Final = GAIN_SAMPLE_FRAMES
"""Fewest frames a window of :func:`plate_windows` holds (a long video at a low frame
rate is cut into fewer windows rather than into medians of a handful of frames)."""


def plate_windows(
    segments: Sequence[tuple[int, int]], *, fps: float, window_s: float = PLATE_WINDOW_S
) -> list[tuple[int, int]]:
    """The frame ranges [start, stop) that each get a plate of their own.

    Each source segment is cut into the fewest near-equal windows of at most
    ``window_s`` seconds at ``fps``, none shorter than :data:`MIN_WINDOW_FRAMES`
    frames (a segment shorter than that is one window).  Windows never straddle two
    segments.  Pure arithmetic on the frame counts.

    Raises
    ------
    InvalidParameterError
        ``fps`` or ``window_s`` not a finite number > 0.
    """
    if not _is_positive_number(fps):
        raise InvalidParameterError(f"the frame rate must be a number > 0, got {fps!r}")
    longest = max(int(checked_plate_window(window_s) * fps), 1)
    windows: list[tuple[int, int]] = []
    for start, stop in segments:
        n_frames = stop - start
        count = min(-(-n_frames // longest), max(n_frames // MIN_WINDOW_FRAMES, 1))
        edges = [start + (n_frames * i) // count for i in range(count + 1)]
        windows.extend(itertools.pairwise(edges))
    return windows


def shown_windows(windows: Sequence[tuple[int, int]], *, most: int) -> list[tuple[int, int]]:
    """At most ``most`` of ``windows``, evenly spread from the first to the last, in order."""
    if most < 1:
        raise InvalidParameterError(f"most must be >= 1, got {most!r}")
    if len(windows) <= most:
        return list(windows)
    picked = sorted({round(i * (len(windows) - 1) / max(most - 1, 1)) for i in range(most)})
    return [windows[i] for i in picked]


def window_label(window: tuple[int, int], *, fps: float) -> str:
    """The window's time span as ``H:MM:SS-H:MM:SS`` at ``fps`` (its stop excluded)."""

    def clock(frame: int) -> str:
        seconds = int(frame / fps)
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"

    return f"{clock(window[0])}-{clock(window[1])}"


def checked_plate_window(window_s: float) -> float:
    """``window_s`` as a float, if it is a finite number of seconds > 0.

    Raises
    ------
    InvalidParameterError
        Anything else, in the command line's words (``--plate-window``).
    """
    if not _is_positive_number(window_s):
        raise InvalidParameterError(f"--plate-window must be a number of seconds > 0, got {window_s!r}")
    return float(window_s)


def _is_positive_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and bool(np.isfinite(value))
        and value > 0
    )


class RankOneBackground(NamedTuple):
    """A rank-1 background ``b g^T`` as SVD-style factors.

    Attributes
    ----------
    U : ndarray, shape (P, 1), float32
    s : ndarray, shape (1,), float32
    Vt : ndarray, shape (1, T), float32
    """

    U: npt.NDArray[np.float32]
    s: npt.NDArray[np.float32]
    Vt: npt.NDArray[np.float32]


def sample_plate(frames: da.Array, *, n_sample: int = GAIN_SAMPLE_FRAMES) -> da.Array:
    """Per pixel, the lower median of ``n_sample`` frames spread over the video; lazy.

    Returns
    -------
    dask.array.Array
        (P,) uint8, in :data:`_PLATE_BANDS` bands of image rows, one task each: the
        band's rows of the sampled frames, pixels made the contiguous axis and sorted
        (numpy's radix sort of uint8; 0.05 s per band of 720p against 0.15 s for a
        partition along the frames of the whole sample, measured).
    """
    require_gray_video(frames)
    rows = max(1, -(-int(frames.shape[1]) // _PLATE_BANDS))
    sample = frames[sample_frames(int(frames.shape[0]), n_sample)].rechunk({0: -1, 1: rows, 2: -1})
    return sample.map_blocks(
        _lower_median_block, drop_axis=0, dtype=np.uint8, meta=np.empty((0, 0), dtype=np.uint8)
    ).ravel()


def _lower_median_block(block: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """(n, y, x) uint8 -> (y, x): each pixel's value of rank ``(n - 1) // 2``."""
    per_pixel = np.ascontiguousarray(block.reshape(block.shape[0], -1).T)
    per_pixel.sort(axis=1, kind="stable")  # radix sort for uint8
    median: npt.NDArray[np.uint8] = per_pixel[:, (block.shape[0] - 1) // 2].reshape(block.shape[1:])
    return median


def rank_one_factors(plate: npt.NDArray[np.generic], gains: npt.NDArray[np.floating]) -> RankOneBackground:
    """``plate`` (P,) and ``gains`` (T,) as factors U (P, 1), s (1,), Vt (1, T) of ``plate gains^T``.

    An all-black plate gives U of zeros and s = 0 (the background is black).
    """
    b = np.asarray(plate, dtype=np.float64).ravel()
    g = np.asarray(gains, dtype=np.float64).ravel()
    b_norm, g_norm = float(np.linalg.norm(b)), float(np.linalg.norm(g))
    u = b / b_norm if b_norm > 0 else np.zeros_like(b)
    vt = g / g_norm if g_norm > 0 else np.full_like(g, 1 / np.sqrt(max(g.size, 1)))
    return RankOneBackground(
        U=u[:, None].astype(np.float32),
        s=np.array([b_norm * g_norm], dtype=np.float32),
        Vt=vt[None, :].astype(np.float32),
    )


PLATE_BLEND: Final = "linear between the windows' middle frames"
"""How :func:`window_factors` passes from one window's plate to the next, in words:
fits record it, and factors of another blend are fitted again."""


def window_factors(
    plates: Sequence[npt.NDArray[np.generic]],
    gains: Sequence[npt.NDArray[np.floating]],
    windows: Sequence[tuple[int, int]],
    *,
    sources: Sequence[tuple[int, int]],
    n_frames: int,
) -> RankOneBackground:
    """The plates of :func:`plate_windows` and their gains as factors U (P, W), s (W,), Vt (W, T).

    ``plates[i]`` (P,) is window i's plate and ``gains[i]`` its frames' gains against
    it.  Within a source video the background moves from plate to plate linearly in
    time between the windows' middle frames (before the first middle and after the
    last, the end window's plate alone): a frame t of window i gets

        L_t = (g_t / mean(g_i)) sum_j w_j(t) mean(g_j) b_j,

    w_j the hat functions on the middles, so the background does not jump at a
    window's edge (on a synthetic shade that sweeps the view, F +0.01 to +0.04 over a
    plate per window; the same elsewhere).  A source of one window gets ``b g^T``
    exactly (:func:`rank_one_factors`), and sources are never blended together.
    Component j is ``b_j / |b_j|`` with its weights over time, so ``U diag(s) Vt``
    gives every frame its background (the columns of U are unit vectors, orthogonal
    only when the plates are).

    Notes
    -----
    Memory: U and Vt themselves, (P + T) W float32.
    """
    if not len(plates) == len(gains) == len(windows):
        raise InvalidParameterError(
            f"got {len(plates)} plates, {len(gains)} gain vectors and {len(windows)} windows;"
            " give one of each per window"
        )
    rows = np.zeros((len(windows), n_frames), dtype=np.float64)
    for source_start, source_stop in sources:
        inside = [i for i, (start, _) in enumerate(windows) if source_start <= start < source_stop]
        if not inside:
            continue
        middles = [(windows[i][0] + windows[i][1] - 1) / 2 for i in inside]
        means = [_mean_gain(gains[i]) for i in inside]
        for place, i in enumerate(inside):
            start, stop = windows[i]
            frames = np.arange(start, stop)
            relative = np.asarray(gains[i], dtype=np.float64) / means[place]  # (stop - start,)
            for other in range(max(place - 1, 0), min(place + 2, len(inside))):  # only neighbours blend
                hat = np.zeros(len(inside))
                hat[other] = 1.0
                weight = np.interp(frames, middles, hat)
                rows[inside[other], start:stop] += relative * weight * means[other]
    u = np.zeros((int(np.asarray(plates[0]).size), len(windows)), dtype=np.float32)
    s_values = np.zeros(len(windows), dtype=np.float32)
    vt = np.zeros((len(windows), n_frames), dtype=np.float32)
    for j, plate in enumerate(plates):
        part = rank_one_factors(plate, rows[j])
        u[:, j], s_values[j], vt[j] = part.U[:, 0], part.s[0], part.Vt[0]
    return RankOneBackground(U=u, s=s_values, Vt=vt)


def _mean_gain(gains: npt.NDArray[np.floating]) -> float:
    """The mean of a window's gains; 1 for a window of zero gains (black frames)."""
    mean = float(np.mean(np.asarray(gains, dtype=np.float64)))
    return mean if mean > 0 else 1.0
