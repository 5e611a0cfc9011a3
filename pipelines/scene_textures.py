"""The textures of synthetic scenes: still backgrounds and the objects' patterns.

A background is a smooth gradient, filtered noise at three scales and a few
sharp-edged rectangles and thin lines (walls, windows, road markings, poles), spanning
:data:`BACKGROUND_RANGE`; an object's texture is a smooth pattern with stripes, dark
or bright, so that it differs from any background it covers by at least 40 grey
levels.  Pure functions of a seed; see :mod:`pipelines.synthetic` for the scenes.
"""

from __future__ import annotations

from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from storage.errors import InvalidParameterError

__all__ = [
    "BACKGROUND_RANGE",
    "BRIGHT_RANGE",
    "DARK_RANGE",
    "ellipse",
    "foliage_texture",
    "noise_sigma_map",
    "object_texture",
    "render_background",
    "stretch",
    "sway_region",
    "toward_grey",
]

BACKGROUND_RANGE: Final = (80, 170)
"""Grey levels spanned by a clean background, inclusive."""
DARK_RANGE: Final = (10, 40)
"""Grey levels of a dark object's texture, inclusive."""
BRIGHT_RANGE: Final = (210, 245)
"""Grey levels of a bright object's texture, inclusive."""
MIDDLE_GREY: Final = 128.0
"""What :func:`toward_grey` pulls a texture towards."""

_BACKGROUND_STREAM: Final = 1
"""The backgrounds' random stream, keyed by (seed, stream, segment)."""
_NOISE_MAP_STREAM: Final = 5
"""The noise map's random stream, keyed by (seed, stream)."""
_SWAY_REGION_STREAM: Final = 6
"""The swaying region's random stream, keyed by (seed, stream)."""


class SizedScene(Protocol):
    """What a background needs of a scene: its size, seed, share of foliage and ground contrast."""

    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def swaying_fraction(self) -> float: ...
    @property
    def ground_contrast(self) -> float: ...


def render_background(spec: SizedScene, segment: int = 0) -> npt.NDArray[np.uint8]:
    """Return the clean background of a segment: uint8 (y, x), values in 80-170.

    The ground's texture is pulled towards its mean by ``spec.ground_contrast`` (1
    keeps it).  Where the scene has foliage (:func:`sway_region`), the foliage at rest
    (:func:`foliage_texture`), whatever the ground's contrast.

    Clean means without objects, illumination drift or noise: where no object is, frame
    ``t`` equals ``background * illumination_gain(spec, t) + noise``, rounded.

    Parameters
    ----------
    spec : SceneSpec (or anything with the attributes of :class:`SizedScene`)
        The scene.
    segment : int
        0 for the background before ``cut_at`` (or of the whole scene), 1 for the one
        after; segment 1 exists for any spec, so it can be asked for without a cut.
    """
    if segment not in (0, 1):
        raise InvalidParameterError(f"segment must be 0 or 1, got {segment!r}")
    rng = np.random.default_rng([spec.seed, _BACKGROUND_STREAM, segment])
    height, width = spec.height, spec.width
    side = min(height, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64) / side
    angle = rng.uniform(0, 2 * np.pi)
    field = 1.5 * (np.cos(angle) * xx + np.sin(angle) * yy)
    for scale, weight in ((0.2, 1.0), (0.06, 0.6), (0.015, 0.3)):
        noise = ndimage.gaussian_filter(
            rng.standard_normal((height, width)), sigma=max(0.5, scale * side), mode="reflect"
        )
        field += weight * noise / max(float(noise.std()), 1e-12)
    for _ in range(int(rng.integers(4, 9))):  # walls, windows, pavement
        h = int(rng.integers(max(2, side // 12), max(3, side // 3)))
        w = int(rng.integers(max(2, side // 12), max(3, side // 2)))
        y = int(rng.integers(0, height - h + 1))
        x = int(rng.integers(0, width - w + 1))
        field[y : y + h, x : x + w] += rng.choice([-1.0, 1.0]) * rng.uniform(1.0, 2.0)
    for _ in range(int(rng.integers(2, 5))):  # thin lines: road markings, poles, cables
        thickness = int(rng.integers(1, 3))
        amplitude = rng.choice([-1.0, 1.0]) * rng.uniform(1.5, 2.5)
        if rng.random() < 0.5:
            y = int(rng.integers(0, height - thickness + 1))
            field[y : y + thickness, :] += amplitude
        else:
            x = int(rng.integers(0, width - thickness + 1))
            field[:, x : x + thickness] += amplitude
    field = ndimage.gaussian_filter(field, sigma=0.6, mode="reflect")
    background = stretch(field, BACKGROUND_RANGE)
    if spec.ground_contrast < 1:
        mean = float(background.mean())
        pulled = mean + spec.ground_contrast * (background.astype(np.float64) - mean)
        background = np.rint(pulled).astype(np.uint8)
    swaying = sway_region(spec, spec.swaying_fraction)
    background[swaying] = foliage_texture(spec)[swaying]
    return background


def object_texture(
    rng: np.random.Generator, height: int, width: int, *, bright: bool
) -> npt.NDArray[np.uint8]:
    """A smooth random pattern with a few stripes, in the dark or the bright range."""
    pattern = ndimage.gaussian_filter(rng.standard_normal((height, width)), sigma=1.0)
    stripes = np.sin(np.arange(height) * rng.uniform(0.5, 1.5))[:, np.newaxis]
    pattern = pattern / max(float(pattern.std()), 1e-12) + stripes
    return stretch(pattern, BRIGHT_RANGE if bright else DARK_RANGE)


def stretch(values: npt.NDArray[np.float64], value_range: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """Map values linearly onto ``value_range`` (min to low, max to high); round to uint8."""
    low, high = value_range
    span = max(float(values.max() - values.min()), 1e-12)
    stretched: npt.NDArray[np.uint8] = np.rint(low + (high - low) * (values - values.min()) / span).astype(
        np.uint8
    )
    return stretched


def ellipse(height: int, width: int) -> npt.NDArray[np.bool_]:
    """The pixels of the ellipse inscribed in a (height, width) box: bool (y, x)."""
    yy, xx = np.mgrid[0:height, 0:width]
    cy, cx = (height - 1) / 2, (width - 1) / 2
    ry, rx = height / 2, width / 2
    return np.asarray(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0)


def sway_region(spec: SizedScene, fraction: float) -> npt.NDArray[np.bool_]:
    """The pixels of swaying foliage: about ``fraction`` of the image, in a few blobs.

    A smooth random field (Gaussian filter of a fifth of the short side) above its
    ``1 - fraction`` quantile: bool (y, x).  Empty for ``fraction`` 0.
    """
    if fraction <= 0:
        return np.zeros((spec.height, spec.width), dtype=bool)
    field = _smooth_field(spec, _SWAY_REGION_STREAM)
    return np.asarray(field > np.quantile(field, 1.0 - fraction))


def foliage_texture(spec: SizedScene) -> npt.NDArray[np.uint8]:
    """Leaves: fine, high-contrast filtered noise (features of 2-4 pixels), uint8 (y, x).

    Spans :data:`BACKGROUND_RANGE`, like the rest of a background, so that objects
    keep their contrast over it.
    """
    rng = np.random.default_rng([spec.seed, _SWAY_REGION_STREAM, 1])
    leaves = ndimage.gaussian_filter(rng.standard_normal((spec.height, spec.width)), sigma=1.0)
    return stretch(np.clip(leaves / max(float(leaves.std()), 1e-12), -2.5, 2.5), BACKGROUND_RANGE)


def noise_sigma_map(spec: SizedScene, *, sigma: float, spread: float) -> npt.NDArray[np.float32] | None:
    """The per-pixel noise standard deviation ``sigma * (1 + spread * m)``; None for spread 0.

    ``m`` is a smooth random map in [-1, 1] (a Gaussian filter of a fifth of the
    short side, scaled to its largest magnitude): float32 (y, x).
    """
    if spread == 0:
        return None
    field = _smooth_field(spec, _NOISE_MAP_STREAM)
    field /= max(float(np.abs(field).max()), 1e-12)  # in [-1, 1]
    sigmas: npt.NDArray[np.float32] = (sigma * (1 + spread * field)).astype(np.float32)
    return sigmas


def toward_grey(texture: npt.NDArray[np.uint8], contrast: float) -> npt.NDArray[np.uint8]:
    """``MIDDLE_GREY + contrast * (texture - MIDDLE_GREY)``, rounded: unchanged at contrast 1."""
    if contrast == 1:
        return texture
    pulled = MIDDLE_GREY + contrast * (texture.astype(np.float64) - MIDDLE_GREY)
    return np.rint(pulled).astype(np.uint8)


def _smooth_field(spec: SizedScene, stream: int) -> npt.NDArray[np.float64]:
    """White noise of the (seed, stream) stream, Gaussian-filtered over a fifth of the short side."""
    rng = np.random.default_rng([spec.seed, stream])
    side = min(spec.height, spec.width)
    return np.asarray(
        ndimage.gaussian_filter(rng.standard_normal((spec.height, spec.width)), sigma=0.2 * side)
    )
