"""Synthetic surveillance scenes with exact ground truth, for tests, demos and benchmarks.

A scene is a still, textured background (a smooth gradient, filtered noise at three
scales and a few sharp-edged rectangles, like walls, windows and road markings) seen by a
fixed camera, with objects moving through it:

- *crossers* (objects 0, 2, 4, ...), wide and fast like vehicles, drive across the
  frame, leave it, stay away a while and come back from the other side;
- *walkers* (objects 1, 3, 5, ...), tall and slower like people, bounce around inside
  the frame and are always visible.

Each object is a rectangle or an ellipse of its own size, speed and texture, either dark
(grey levels 10-40) or bright (210-245), while the background spans 80-170: an object
differs from whatever background it covers by at least 40 grey levels
(:data:`MIN_CONTRAST`) before illumination drift and noise.  Then, per frame:

1. the objects are painted over the background in order (later ones in front); the
   truth mask is exactly the union of the painted pixels (CDnet values: 0 background,
   255 foreground);
2. the whole image is multiplied by the illumination gain
   ``1 + illumination_drift * sin(2 pi t / n_frames)`` (one slow cycle over the clip:
   brighter in the first half, darker in the second), rain is added and the view
   shaken, with its truth (:mod:`pipelines.scene_effects`);
3. Gaussian sensor noise of standard deviation ``noise_sigma`` is added and the result
   rounded and clipped to uint8.

With ``cut_at`` the camera cuts, at that frame, to a second background with a different
texture; the objects carry on.  Everything is deterministic for a given ``seed``, and each
frame's noise has its own random stream, so frames can be rendered in any order.

:func:`write_scene` encodes a scene with :func:`storage.video_encoder.write_video` and
writes the truth masks as 8-bit gray PNG files plus a ``frame_map.csv`` that maps each
file to its frame, the layout :func:`storage.truth.read_truth_masks` reads back
(written by :class:`storage.truth.TruthMaskWriter`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from pipelines.scene_effects import (
    MAX_JITTER,
    MAX_PRECIPITATION,
    camera_shift,
    illumination_gain,
    rain_streaks,
    shaken,
    sweeping_shade,
)
from pipelines.scene_objects import make_objects, shadow_cover
from pipelines.scene_textures import (
    BACKGROUND_RANGE,
    BRIGHT_RANGE,
    DARK_RANGE,
    noise_sigma_map,
    render_background,
    sway_region,
)
from pipelines.shapes import is_int
from storage.errors import InvalidParameterError
from storage.truth import TruthMaskWriter
from storage.video_encoder import write_video

__all__ = [
    "BACKGROUND_RANGE",
    "BRIGHT_RANGE",
    "DARK_RANGE",
    "MAX_CAMOUFLAGE",
    "MAX_JITTER",
    "MAX_PRECIPITATION",
    "MAX_SHADOW",
    "MAX_SWEEP",
    "MIN_CONTRAST",
    "SHADOW_TRUTH",
    "SceneSpec",
    "SceneTruth",
    "illumination_gain",
    "render_background",
    "render_scene",
    "sweeping_shade",
    "write_scene",
]

MIN_CONTRAST: Final = min(BACKGROUND_RANGE[0] - DARK_RANGE[1], BRIGHT_RANGE[0] - BACKGROUND_RANGE[1])
"""Smallest difference between an object pixel and the background it covers (40)."""


MAX_DRIFT: Final = 0.5
MAX_SHADOW: Final = 0.8
MAX_CAMOUFLAGE: Final = 0.8
MAX_SWEEP: Final = 0.8
SHADOW_TRUTH: Final = 50
"""Truth value of a pixel in an object's cast shadow, not under an object (CDnet's hard shadow)."""
MAX_SWAYING: Final = 0.5
SWAY_PIXELS: Final = 2
"""Largest shift of swaying foliage, pixels in each direction, per frame."""
_MIN_SIDE: Final = 16
_DEFAULT_MAX_MASKS: Final = 1000

# Independent random streams, keyed by (seed, stream[, index]).
_NOISE_STREAM: Final = 3
_SWAY_STREAM: Final = 7


@dataclass(frozen=True, kw_only=True)
class SceneSpec:
    """What to render.

    Attributes
    ----------
    width, height : int
        Frame size in pixels, each at least 16.  Encoding as ``h264`` needs both even.
    n_frames : int
        Number of frames, at least 1.
    fps : float
        Frame rate written into the video, > 0 (the motion is defined per frame).
    n_objects : int
        Number of moving objects, >= 0.
    noise_sigma : float
        Standard deviation of the Gaussian sensor noise in grey levels, >= 0.
    illumination_drift : float
        Relative amplitude of the slow global brightness cycle, in [0, 0.5): 0.2 makes
        the scene up to 20 % brighter, then up to 20 % darker.
    cut_at : int, optional
        Frame index, in 1 .. n_frames - 1, from which the camera shows a second,
        different background (segment 1); frames before it show segment 0.
    pause_fraction : float
        In [0, 1): each walker stands still for this fraction of the clip, from a
        random frame on (people who stop to talk, wait or sit).  Above one half, a
        per-pixel temporal median takes them for background: that is what it tests.
    stop_in_turn : bool
        The walkers stop one after another at one place (the middle of the frame, feet
        at three quarters of its height), each for ``pause_fraction`` of the clip, with
        the rest of the clip spread evenly between the stops: visitors queueing at a
        counter.  The place is taken for ``walkers * pause_fraction`` of the clip by
        objects that look different from each other, so that no per-pixel statistic
        finds the ground there on its own when that is above one half.  Needs
        ``walkers * pause_fraction < 1`` (walkers: ``n_objects // 2``).
    noise_spread : float
        In [0, 1): the sensor noise varies over the image, its standard deviation
        ``noise_sigma * (1 + noise_spread * m)`` with ``m`` a smooth map in [-1, 1]
        (dark corners, compression, a warm sensor): a single global threshold is too
        high in some places and too low in others.
    object_contrast : float
        In (0, 1]: the objects' textures are pulled towards the middle grey of the
        background by this factor, ``128 + c * (v - 128)``.  1 keeps them at least
        :data:`MIN_CONTRAST` from any background; at 0.5 dark objects over dark
        ground and bright ones over bright ground differ by a few grey levels only
        (grey cars on a grey road), so recall depends on a low threshold.
    swaying_fraction : float
        In [0, 0.5): this share of the image is foliage in the wind (leaves, water,
        an escalator): in every frame the background there is shifted by up to
        :data:`SWAY_PIXELS` pixels in each direction, a new random shift per frame.
        It is background in the truth masks; a threshold that ignores how much each
        pixel varies marks it as foreground.
    camouflage : float
        In [0, 0.8): a patch of each object, an ellipse this fraction of its height and
        width at a random place inside it, shows the ground behind it (a windscreen or
        a grey roof on a grey road, a coat the colour of the floor) but is part of the
        object in the truth.  Only filling the holes of a mask recovers it; where the
        object is cut by the frame's edge, the hole may open onto that edge.
    shadow_strength : float
        In [0, 0.8): each object casts a shadow (its own shape, shifted down and
        right by :data:`pipelines.scene_objects.SHADOW_OFFSET` of its size, with a
        soft edge) that dims the background it falls on to ``1 - shadow_strength``
        of its light (a sunny day: 0.4-0.6).  Truth marks it :data:`SHADOW_TRUTH`,
        which CDnet scores as background; 0 casts no shadows.
    shade_sweep : float
        In [0, 0.8): the shade of a building sweeps once across the view over the
        clip, as the sun moves over hours: left of a soft vertical edge that travels
        from beyond the left border to beyond the right one, the light (on the ground
        and on the objects) is ``1 - shade_sweep`` of what it is right of it.  Each
        pixel is in the shade for part of the clip, so no single plate (and no gain
        shared by the whole frame) fits every frame; the truth marks the shade as
        background.
    ground_contrast : float
        In (0, 1]: the background's texture is pulled towards its mean by this factor.
        At 0.25 it varies by about 1 grey level over 15 pixels, as the asphalt of the
        real roads here does (1-3): a shadow there keeps a pattern that the noise
        mostly hides.
    camera_jitter : int
        0 to :data:`MAX_JITTER` pixels: the camera shakes (a pole in the wind), the
        whole view, objects, shadows and truth with it, moved by a new random whole
        shift of up to this many pixels in each direction at every frame
        (:func:`pipelines.scene_effects.camera_shift`); sensor noise does not move.
        Every edge of the background then changes from frame to frame.
    precipitation : float
        In [0, :data:`MAX_PRECIPITATION`): rain, this share of the pixels starting a
        bright streak in each frame, in front of everything
        (:func:`pipelines.scene_effects.rain_streaks`); background in the truth.
    seed : int
        Seed of every random choice, >= 0.
    """

    width: int = 160
    height: int = 120
    n_frames: int = 120
    fps: float = 10.0
    n_objects: int = 4
    noise_sigma: float = 2.0
    illumination_drift: float = 0.0
    cut_at: int | None = None
    pause_fraction: float = 0.0
    stop_in_turn: bool = False
    noise_spread: float = 0.0
    object_contrast: float = 1.0
    swaying_fraction: float = 0.0
    camouflage: float = 0.0
    shadow_strength: float = 0.0
    shade_sweep: float = 0.0
    ground_contrast: float = 1.0
    camera_jitter: int = 0
    precipitation: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if not is_int(value) or value < _MIN_SIDE:
                raise InvalidParameterError(f"{name} must be an integer >= {_MIN_SIDE}, got {value!r}")
        if not is_int(self.n_frames) or self.n_frames < 1:
            raise InvalidParameterError(f"n_frames must be an integer >= 1, got {self.n_frames!r}")
        if not _is_finite(self.fps) or self.fps <= 0:
            raise InvalidParameterError(f"fps must be > 0, got {self.fps!r}")
        if not is_int(self.n_objects) or self.n_objects < 0:
            raise InvalidParameterError(f"n_objects must be an integer >= 0, got {self.n_objects!r}")
        if not _is_finite(self.noise_sigma) or self.noise_sigma < 0:
            raise InvalidParameterError(f"noise_sigma must be >= 0, got {self.noise_sigma!r}")
        if not _is_finite(self.illumination_drift) or not (0 <= self.illumination_drift < MAX_DRIFT):
            raise InvalidParameterError(
                f"illumination_drift must be in [0, {MAX_DRIFT}), got {self.illumination_drift!r}"
            )
        if self.cut_at is not None and (not is_int(self.cut_at) or not 1 <= self.cut_at < self.n_frames):
            raise InvalidParameterError(
                f"cut_at must be None or a frame index in 1..{self.n_frames - 1}"
                f" (n_frames - 1), got {self.cut_at!r}"
            )
        for name in ("pause_fraction", "noise_spread"):
            value = getattr(self, name)
            if not _is_finite(value) or not 0 <= value < 1:
                raise InvalidParameterError(f"{name} must be in [0, 1), got {value!r}")
        if not isinstance(self.stop_in_turn, bool):
            raise InvalidParameterError(f"stop_in_turn must be True or False, got {self.stop_in_turn!r}")
        if self.stop_in_turn and (self.n_objects // 2) * self.pause_fraction >= 1:
            raise InvalidParameterError(
                f"stop_in_turn needs the {self.n_objects // 2} walkers' stops to fit in the clip:"
                f" walkers * pause_fraction < 1, got {self.n_objects // 2} * {self.pause_fraction!r}"
            )
        if not _is_finite(self.object_contrast) or not 0 < self.object_contrast <= 1:
            raise InvalidParameterError(f"object_contrast must be in (0, 1], got {self.object_contrast!r}")
        if not _is_finite(self.swaying_fraction) or not 0 <= self.swaying_fraction < MAX_SWAYING:
            raise InvalidParameterError(
                f"swaying_fraction must be in [0, {MAX_SWAYING}), got {self.swaying_fraction!r}"
            )
        if not _is_finite(self.camouflage) or not 0 <= self.camouflage < MAX_CAMOUFLAGE:
            raise InvalidParameterError(
                f"camouflage must be in [0, {MAX_CAMOUFLAGE}), got {self.camouflage!r}"
            )
        if not _is_finite(self.shadow_strength) or not 0 <= self.shadow_strength < MAX_SHADOW:
            raise InvalidParameterError(
                f"shadow_strength must be in [0, {MAX_SHADOW}), got {self.shadow_strength!r}"
            )
        if not _is_finite(self.shade_sweep) or not 0 <= self.shade_sweep < MAX_SWEEP:
            raise InvalidParameterError(f"shade_sweep must be in [0, {MAX_SWEEP}), got {self.shade_sweep!r}")
        if not _is_finite(self.ground_contrast) or not 0 < self.ground_contrast <= 1:
            raise InvalidParameterError(f"ground_contrast must be in (0, 1], got {self.ground_contrast!r}")
        if not is_int(self.camera_jitter) or not 0 <= self.camera_jitter <= MAX_JITTER:
            raise InvalidParameterError(
                f"camera_jitter must be an integer in 0..{MAX_JITTER}, got {self.camera_jitter!r}"
            )
        if not _is_finite(self.precipitation) or not 0 <= self.precipitation < MAX_PRECIPITATION:
            raise InvalidParameterError(
                f"precipitation must be in [0, {MAX_PRECIPITATION}), got {self.precipitation!r}"
            )
        if not is_int(self.seed) or self.seed < 0:
            raise InvalidParameterError(f"seed must be an integer >= 0, got {self.seed!r}")

    @property
    def n_segments(self) -> int:
        """Number of backgrounds the scene shows: 2 with a cut, else 1."""
        return 1 if self.cut_at is None else 2

    def segment_of(self, frame: int) -> int:
        """Return the background segment (0 or 1) shown at a frame index."""
        return 1 if self.cut_at is not None and frame >= self.cut_at else 0


@dataclass(frozen=True, kw_only=True)
class SceneTruth:
    """What :func:`write_scene` wrote.

    Attributes
    ----------
    spec : SceneSpec
        The scene.
    video_path : Path
        The encoded video.
    codec : str
        ``h264`` or ``ffv1``.
    n_frames : int
        Frames in the video.
    truth_dir : Path or None
        Folder of the PNG masks, or None when no truth was written.
    frame_map_path : Path or None
        ``truth_dir / "frame_map.csv"``, or None.
    mask_frames : tuple of int
        Frame indices (0-based) that have a mask file, ascending.
    foreground_fraction : float
        Mean fraction of foreground pixels over all frames.
    """

    spec: SceneSpec
    video_path: Path
    codec: str
    n_frames: int
    truth_dir: Path | None
    frame_map_path: Path | None
    mask_frames: tuple[int, ...]
    foreground_fraction: float


class _Scene:
    """A scene's fixed parts, built once: backgrounds (uint8) and objects."""

    def __init__(self, spec: SceneSpec) -> None:
        self.spec = spec
        self.swaying = sway_region(spec, spec.swaying_fraction)
        self.backgrounds = [render_background(spec, s) for s in range(spec.n_segments)]
        self.objects = make_objects(spec)
        self.noise_map = noise_sigma_map(spec, sigma=spec.noise_sigma, spread=spec.noise_spread)

    def frame(self, t: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """Render frame ``t``: (frame, mask), both uint8 (y, x)."""
        spec = self.spec
        background = self.backgrounds[spec.segment_of(t)]
        clean = background.copy()
        if self.swaying.any():
            shift = np.random.default_rng([spec.seed, _SWAY_STREAM, t]).integers(
                -SWAY_PIXELS, SWAY_PIXELS + 1, 2
            )
            clean[self.swaying] = np.roll(background, tuple(int(v) for v in shift), axis=(0, 1))[self.swaying]
        shade = None
        if spec.shadow_strength > 0:
            shade = shadow_cover(self.objects, t, height=spec.height, width=spec.width)
            clean = np.rint(clean * (1 - np.float32(spec.shadow_strength) * shade)).astype(np.uint8)
        mask = np.zeros((spec.height, spec.width), dtype=bool)
        for obj in self.objects:
            y, x = obj.top_left(t, height=spec.height, width=spec.width)
            h, w = obj.shape.shape
            ys, ye = max(y, 0), min(y + h, spec.height)
            xs, xe = max(x, 0), min(x + w, spec.width)
            if ys >= ye or xs >= xe:
                continue
            inside = obj.shape[ys - y : ye - y, xs - x : xe - x]
            painted = inside & ~obj.see_through[ys - y : ye - y, xs - x : xe - x]
            clean[ys:ye, xs:xe][painted] = obj.texture[ys - y : ye - y, xs - x : xe - x][painted]
            mask[ys:ye, xs:xe] |= inside
        image = clean.astype(np.float32)
        gain = illumination_gain(spec, t)
        if gain != 1.0:
            image *= np.float32(gain)
        if spec.shade_sweep > 0:
            image *= sweeping_shade(spec, t)
        if spec.precipitation > 0:
            image += rain_streaks(spec, t)
        view = camera_shift(spec, t)
        image, mask = shaken(image, view), shaken(mask, view)
        if shade is not None:
            shade = shaken(shade, view)
        if spec.noise_sigma > 0:
            noise_rng = np.random.default_rng([spec.seed, _NOISE_STREAM, t])
            if self.noise_map is None:
                image += noise_rng.normal(0.0, spec.noise_sigma, image.shape).astype(np.float32)
            else:
                image += noise_rng.standard_normal(image.shape).astype(np.float32) * self.noise_map
        frame = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        truth = mask.astype(np.uint8) * np.uint8(255)
        if shade is not None:
            truth[(shade >= 0.5) & ~mask] = SHADOW_TRUTH
        return frame, truth


def render_scene(
    spec: SceneSpec,
) -> Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]:
    """Yield each frame of a scene with its truth mask, in order.

    Yields
    ------
    frame : ndarray of uint8, shape (y, x)
        The gray camera image.
    mask : ndarray of uint8, shape (y, x)
        Ground truth in CDnet values: 255 on the objects' pixels, 0 elsewhere.

    Notes
    -----
    Memory: the backgrounds (one or two uint8 images), the objects' small textures and
    one frame being rendered (a few float32 images), whatever ``n_frames`` is.  Both
    yielded arrays are fresh, so a consumer may keep them.
    """
    scene = _Scene(spec)
    for t in range(spec.n_frames):
        yield scene.frame(t)


def write_scene(
    spec: SceneSpec,
    video_path: str | os.PathLike[str],
    *,
    codec: Literal["h264", "ffv1"] = "h264",
    crf: int = 18,
    truth_dir: str | os.PathLike[str] | None = None,
    truth_every: int | None = None,
) -> SceneTruth:
    """Render a scene into a video file and, optionally, its truth masks into a folder.

    Parameters
    ----------
    spec : SceneSpec
        The scene; ``h264`` needs an even width and height.
    video_path : str or path-like
        The video; ``.mp4`` for ``h264``, ``.mkv`` or ``.avi`` for ``ffv1`` (see
        :func:`storage.video_encoder.write_video`).
    codec : {"h264", "ffv1"}
        ``ffv1`` is lossless: the decoded frames equal :func:`render_scene`'s exactly.
    crf : int
        libx264 quality for ``h264`` (0-51, lower is better).
    truth_dir : str or path-like, optional
        Folder (created if needed) for the masks: ``NNNNNN.png``, one 8-bit gray PNG per
        scored frame, named by its 0-based frame index (six digits, more when needed),
        and ``frame_map.csv`` with header ``mask,frame`` giving each file's name
        (relative to the folder) and frame index.  The CSV is written last, so a folder
        without it is incomplete.
    truth_every : int, optional
        Write the mask of every k-th frame (frames 0, k, 2k, ...).  Default: every frame
        for scenes of up to 1000 frames, otherwise a step that keeps about 1000 masks.

    Returns
    -------
    SceneTruth
        The paths written and the frames that have masks.

    Notes
    -----
    Streaming: frames go to the encoder as they are rendered and each mask is saved as
    its frame passes, so memory stays that of :func:`render_scene`.  The video is
    replaced atomically by the encoder; a stale ``frame_map.csv`` in ``truth_dir`` is
    removed before the first mask is written.
    """
    if codec == "h264" and (spec.width % 2 or spec.height % 2):
        raise InvalidParameterError(
            f"h264 needs an even width and height, the scene is {spec.width}x{spec.height};"
            " choose even sizes or codec='ffv1'"
        )
    if truth_every is None:
        every = max(1, math.ceil(spec.n_frames / _DEFAULT_MAX_MASKS))
    elif is_int(truth_every) and truth_every >= 1:
        every = truth_every
    else:
        raise InvalidParameterError(f"truth_every must be an integer >= 1, got {truth_every!r}")

    truth = TruthMaskWriter(truth_dir, n_frames=spec.n_frames) if truth_dir is not None else None
    foreground = 0

    def frames() -> Iterator[npt.NDArray[np.uint8]]:
        nonlocal foreground
        for t, (frame, mask) in enumerate(render_scene(spec)):
            foreground += int(np.count_nonzero(mask == 255))
            if truth is not None and t % every == 0:
                truth.add(t, mask)
            yield frame

    n_written = write_video(video_path, frames(), fps=spec.fps, codec=codec, crf=crf, color=False)
    frame_map = truth.finish() if truth is not None else None
    return SceneTruth(
        spec=spec,
        video_path=Path(video_path),
        codec=codec,
        n_frames=n_written,
        truth_dir=truth.folder if truth is not None else None,
        frame_map_path=frame_map,
        mask_frames=tuple(t for _, t in truth.rows) if truth is not None else (),
        foreground_fraction=foreground / (spec.n_frames * spec.width * spec.height),
    )


def _is_finite(value: object) -> bool:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
