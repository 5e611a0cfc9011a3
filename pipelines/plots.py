"""Plots of a decomposition and a separation as PNG bytes: spectrum, energy, activity, where.

Pure functions: arrays in memory in, PNG bytes out; nothing is shown or written to
disk.  Plots are drawn on a :class:`matplotlib.figure.Figure` rendered by the Agg
canvas directly, without pyplot, so no display, no global figure state and no backend
choice is involved (safe in threads and on headless machines).  Images (frames,
plates, component grids) are :mod:`pipelines.images`, drawn by Pillow.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Final

import dask.array as da
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipelines.metrics import cumulative_energy
from pipelines.render import shrink
from storage.errors import InvalidParameterError

__all__ = ["activity_png", "energy_png", "foreground_share_png", "spectrum_png"]

_DPI: Final = 100
_PLOT_SIZE: Final = (6.4, 3.6)  # inches
_LINE_PLOT_MARGINS: Final = {"left": 0.12, "right": 0.97, "bottom": 0.14, "top": 0.9}
"""Shares of the figure around a line plot's axes (see :func:`_figure`)."""


def spectrum_png(s: npt.ArrayLike) -> bytes:
    """Plot the singular values against their index, on a log scale.

    Parameters
    ----------
    s : array_like
        Singular values (component,), in memory.

    Returns
    -------
    bytes
        A PNG of 640 x 360 pixels.  Zero values (no place on a log axis) are left out.
    """
    values = _vector(s, "s")
    figure, axes = _figure()
    index = np.arange(values.size)
    positive = values > 0
    axes.semilogy(index[positive], values[positive], marker="." if values.size <= 100 else None, lw=1)
    axes.set_xlabel("component")
    axes.set_ylabel("singular value")
    axes.set_title("Singular value spectrum")
    axes.grid(True, which="both", alpha=0.3)
    return _png(figure)


def energy_png(s: npt.ArrayLike, *, total: float | None = None) -> bytes:
    """Plot the cumulative share of the energy ``s_i**2`` held by the first components.

    Parameters
    ----------
    s : array_like
        Singular values (component,), in memory.
    total : float, optional
        ``||M||_F^2``; by default the energy of the given components (see
        :func:`pipelines.metrics.cumulative_energy`).

    Returns
    -------
    bytes
        A PNG of 640 x 360 pixels; the y axis in percent.
    """
    values = _vector(s, "s")
    share = cumulative_energy(values, total=total)
    figure, axes = _figure()
    axes.plot(np.arange(1, share.size + 1), 100 * share, marker="." if share.size <= 100 else None, lw=1)
    axes.set_xlabel("components kept (rank k)")
    axes.set_ylabel("cumulative energy (%)")
    axes.set_title("Energy held by the first k components")
    axes.set_ylim(0, 100)
    axes.grid(True, alpha=0.3)
    return _png(figure)


def activity_png(
    fraction: npt.ArrayLike,
    *,
    fps: float,
    segment_starts: Sequence[int] = (),
    marked_frames: Sequence[int] = (),
) -> bytes:
    """Plot the foreground fraction of every frame against time: the activity timeline.

    Parameters
    ----------
    fraction : array_like
        (frame,) foreground fraction in [0, 1], in memory
        (:func:`pipelines.activity.foreground_fraction`).
    fps : float
        The stored video's frame rate; the x axis is in seconds.
    segment_starts : sequence of int
        First frames of the second and later source videos, drawn as dashed lines.
    marked_frames : sequence of int
        Frames shown as samples elsewhere, marked with dots.

    Returns
    -------
    bytes
        A PNG of 640 x 360 pixels; the y axis in percent of the frame.
    """
    values = _vector(fraction, "fraction")
    if not fps > 0:
        raise InvalidParameterError(f"fps must be positive, got {fps}")
    seconds = np.arange(values.size) / fps
    figure, axes = _figure()
    axes.plot(seconds, 100 * values, lw=0.8)
    for start in segment_starts:
        axes.axvline(start / fps, color="0.5", ls="--", lw=0.8)
    marked = [frame for frame in marked_frames if 0 <= frame < values.size]
    if marked:
        axes.plot(seconds[marked], 100 * values[marked], "o", color="C3", ms=4)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("foreground (% of the frame)")
    axes.set_title("Activity: foreground share of every frame")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    return _png(figure)


def foreground_share_png(share: npt.ArrayLike, *, mostly: float) -> bytes:
    """Map each pixel's share of frames in the foreground: where things move, and where they stay.

    Parameters
    ----------
    share : array_like
        (y, x) shares in [0, 1], in memory (:func:`pipelines.activity.pixel_foreground_share`).
    mostly : float
        The share above which a pixel is "mostly foreground"; those pixels are outlined.

    Returns
    -------
    bytes
        A PNG of 640 x 360 pixels at most: the map in percent of the frames, with a
        colour bar.
    """
    values = np.asarray(share, dtype=np.float32)
    if values.ndim != 2 or values.size == 0:
        raise InvalidParameterError(f"share must be a non-empty (y, x) map, got shape {values.shape}")
    # as grey levels of 255ths, shrunk to about the width shown (a display: the rounding is invisible)
    levels = _shrunk(np.rint(np.clip(values, 0, 1) * 255).astype(np.uint8))
    outlined = _shrunk(np.where(values > mostly, np.uint8(255), np.uint8(0))) > 127
    figure, axes = _figure(fitted=True)
    image = axes.imshow(
        levels * np.float32(100 / 255), cmap="magma", vmin=0, vmax=100, interpolation="nearest"
    )
    if np.any(outlined) and min(outlined.shape) >= 2:  # a contour needs two rows and two columns
        axes.contour(outlined, levels=[0.5], colors="cyan", linewidths=0.8)
    figure.colorbar(image, ax=axes, label="frames in the foreground (%)")
    axes.set_title(f"Where the foreground is (outlined: over {100 * mostly:.0f} % of the frames)")
    axes.set_axis_off()
    return _png(figure)


_MAP_WIDTH: Final = 480
"""Maps wider than this many pixels are averaged over square blocks before drawing: the
figure shows them at about this width, and drawing the full map costs time and PNG bytes
in proportion to its pixels for nothing a reader can see."""


def _shrunk(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """(y, x) -> the means of its f x f blocks, at most :data:`_MAP_WIDTH` wide.

    f is the least integer that makes it so (:func:`pipelines.render.shrink`); the image
    is returned as it is when f is 1 or larger than its height.
    """
    factor = max(1, -(-image.shape[1] // _MAP_WIDTH))
    if factor == 1 or image.shape[0] < factor:
        return image
    shrunk: npt.NDArray[np.uint8] = shrink(image[np.newaxis], factor)[0]
    return shrunk


def _figure(*, fitted: bool = False) -> tuple[Figure, Axes]:
    """A figure of :data:`_PLOT_SIZE` and its axes.

    Line plots (``fitted`` False) get fixed margins, room for a title, axis labels and
    tick labels of up to six characters; a map with a colour bar is laid out by
    matplotlib's constrained layout, which measures every text and costs most of a
    plot's drawing time (the report draws four).
    """
    figure = Figure(figsize=_PLOT_SIZE, dpi=_DPI, layout="constrained" if fitted else None)
    FigureCanvasAgg(figure)
    if not fitted:
        figure.subplots_adjust(**_LINE_PLOT_MARGINS)
    axes = figure.add_subplot(1, 1, 1)
    return figure, axes


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _vector(values: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    if isinstance(values, da.Array):
        raise InvalidParameterError(f"{name} must be in memory, got a dask array; compute it first")
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise InvalidParameterError(
            f"{name} must be a non-empty vector (component,), got shape {array.shape}"
        )
    return array
