"""Images as PNG bytes, drawn by Pillow: frames, background plates, component grids.

Pure functions: arrays in memory in, PNG bytes out; nothing is shown or written to
disk.  Pixels are encoded pixel for pixel (:func:`image_png`, :func:`background_png`);
component grids are composed by Pillow (:func:`components_png`).  No plotting library
is imported with this module: the steps that write images but draw no plot (``separate``)
do not pay for matplotlib's import (timed in the README).  Plots are :mod:`pipelines.plots`.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Sequence
from typing import Final

import dask.array as da
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from pipelines.shapes import CHANNELS
from storage.errors import InvalidParameterError

__all__ = ["background_png", "components_png", "image_png"]

_PANEL_PIXELS: Final = 240
"""Width of a component's panel in a grid."""
_SHOWN_PIXELS: Final = 2 * _PANEL_PIXELS
_IMAGE_NDIM: Final = 2
_COLOR_NDIM: Final = 3
_GAP_PIXELS: Final = 8
_TITLE_PIXELS: Final = 22
_TITLE_POINTS: Final = 13
_PNG_COMPRESS_LEVEL: Final = 3
"""zlib level of full-size images (Pillow's default is 6).  A 1280x720 background plate
took 77 ms and 220 kB at 6, 27 ms and 254 kB at 3, 17 ms and 277 kB at 1 (measured);
a run writes about ten such images, and they are written once and opened once."""


def components_png(
    images: Sequence[npt.ArrayLike],
    *,
    titles: Sequence[str] | None = None,
    columns: int = 4,
    stretch: bool = True,
) -> bytes:
    """Show component images (``U[:, i]`` reshaped to (y, x)) side by side in a grid.

    Parameters
    ----------
    images : sequence of array_like
        Each (y, x) (or (y, x, 3)), any real dtype, in memory.  With ``stretch`` each
        is shown in gray stretched between its own minimum and maximum (a component's
        sign and scale are arbitrary); without it, as grey levels clipped to 0-255
        (background plates, whose brightness is to be compared).
    titles : sequence of str, optional
        One per image; default ``component 0``, ``component 1``, ...
    columns : int
        Images per row, >= 1.
    stretch : bool
        Stretch each image to its own range (default) or show its grey levels.

    Returns
    -------
    bytes
        A PNG grid, 240 pixels wide per image, its title above it.

    Notes
    -----
    Drawn by Pillow, not as matplotlib subplots: ten subplots in a constrained layout
    took about half a second of a report (measured on eight 720p components: 0.5 s,
    against a few tens of milliseconds here).
    """
    if not images:
        raise InvalidParameterError("components_png needs at least one image")
    if columns < 1:
        raise InvalidParameterError(f"columns must be >= 1, got {columns!r}")
    names = list(titles) if titles is not None else [f"component {i}" for i in range(len(images))]
    if len(names) != len(images):
        raise InvalidParameterError(f"got {len(names)} titles for {len(images)} images; give one per image")
    arrays = [_shrunk(_image(image)) for image in images]
    n_columns = min(columns, len(arrays))
    n_rows = math.ceil(len(arrays) / n_columns)
    height, width = arrays[0].shape[:2]
    panel_width = _PANEL_PIXELS
    panel_height = max(1, round(panel_width * height / max(width, 1)))
    cell_width, cell_height = panel_width + _GAP_PIXELS, panel_height + _TITLE_PIXELS + _GAP_PIXELS
    grid = Image.new("RGB", (n_columns * cell_width + _GAP_PIXELS, n_rows * cell_height), "white")
    draw = ImageDraw.Draw(grid)
    font = _title_font()
    for position, (array, name) in enumerate(zip(arrays, names, strict=True)):
        row, column = divmod(position, n_columns)
        left, top = _GAP_PIXELS + column * cell_width, row * cell_height
        shown = _stretched(array) if stretch else np.clip(np.rint(array), 0, 255).astype(np.uint8)
        panel = Image.fromarray(shown).resize((panel_width, panel_height), Image.Resampling.BOX)
        grid.paste(panel, (left, top + _TITLE_PIXELS))
        title_at = (left + panel_width / 2, top + _TITLE_PIXELS / 2)
        draw.text(title_at, name, fill="black", font=font, anchor="mm")
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _stretched(array: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """An image stretched between its own minimum (0) and maximum (255); flat: all 0."""
    low, high = float(array.min()), float(array.max())
    scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


@functools.cache
def _title_font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The plots' own font (matplotlib's DejaVu Sans) for titles drawn by Pillow."""
    from matplotlib import font_manager  # the font's path only: no plotting library loaded before

    try:
        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), _TITLE_POINTS)
    except OSError:  # no FreeType in this Pillow: its bitmap font
        return ImageFont.load_default()


def background_png(image: npt.ArrayLike) -> bytes:
    """Encode a background image given in grey levels: rounded, clipped to 0-255.

    Parameters
    ----------
    image : array_like
        (y, x) or (y, x, 3), float or integer grey levels (e.g. a computed
        :func:`pipelines.separate.background_images` image).

    Returns
    -------
    bytes
        A PNG at the image's own size, 8-bit gray (or RGB).
    """
    array = _image(image)
    return image_png(np.clip(np.rint(array), 0, 255).astype(np.uint8))


def image_png(array: npt.ArrayLike) -> bytes:
    """Encode a uint8 image, (y, x) gray or (y, x, 3) RGB, as PNG, pixel for pixel."""
    if isinstance(array, da.Array):
        raise InvalidParameterError("image_png needs an image in memory, got a dask array; compute it first")
    pixels = np.asarray(array)
    if pixels.dtype != np.uint8:
        raise InvalidParameterError(
            f"image_png needs uint8 pixels, got {pixels.dtype}; use background_png for grey levels"
        )
    _check_image_shape(pixels)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(
        buffer, format="PNG", compress_level=_PNG_COMPRESS_LEVEL
    )
    return buffer.getvalue()


def _image(image: npt.ArrayLike) -> npt.NDArray[np.float64]:
    if isinstance(image, da.Array):
        raise InvalidParameterError("images must be in memory, got a dask array; compute it first")
    array = np.asarray(image, dtype=np.float64)
    _check_image_shape(array)
    return array


def _shrunk(array: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The image averaged over s x s blocks, its longer side at most ``_SHOWN_PIXELS``.

    Twice the pixels a panel shows: Pillow then resamples a few hundred pixels
    instead of a whole 720p or 4K frame (1.6 s to draw four 720p components, measured).
    """
    step = math.ceil(max(array.shape[:2]) / _SHOWN_PIXELS)
    if step <= 1:
        return array
    height, width = (array.shape[0] // step) * step, (array.shape[1] // step) * step
    blocks = array[:height, :width].reshape(height // step, step, width // step, step, *array.shape[2:])
    shrunk: npt.NDArray[np.float64] = blocks.mean(axis=(1, 3))
    return shrunk


def _check_image_shape(array: npt.NDArray[np.generic]) -> None:
    color = array.ndim == _COLOR_NDIM and array.shape[-1] == CHANNELS
    if (array.ndim != _IMAGE_NDIM and not color) or array.size == 0:
        raise InvalidParameterError(f"an image must have shape (y, x) or (y, x, 3), got {array.shape}")
