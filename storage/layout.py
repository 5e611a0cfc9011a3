"""The store layout: every group, array and attribute name, in one place.

::

    STORE/                      root group; attrs: {"vidsvd": {"format": 1}}
      video                     (frame, y, x[, channel]) uint8
      time                      (frame,) float64, seconds: the frames' coordinate
      factors/<name>/U, s, Vt   float32
      foreground                (frame, y, x) int16, only with separate --foreground
      masks                     (frame, y, x) uint8 (0 or 255)
"""

from __future__ import annotations

from typing import Final

FORMAT_ATTR: Final = "vidsvd"
FORMAT_VERSION: Final = 1
COMPLETE_ATTR: Final = "complete"
PROGRESS_ATTR: Final = "progress"

VIDEO_ARRAY: Final = "video"
TIME_ARRAY: Final = "time"
TIME_DIMS: Final = ("frame",)
COORDINATES_ATTR: Final = "coordinates"
"""CF's attribute naming an array's non-index coordinates; xarray reads it."""
FACTORS_GROUP: Final = "factors"
FOREGROUND_ARRAY: Final = "foreground"
MASKS_ARRAY: Final = "masks"

FACTOR_U: Final = "U"
FACTOR_S: Final = "s"
FACTOR_VT: Final = "Vt"
RANDOMIZED_OPTIONS: Final = ("power_iters", "oversample", "seed")
"""Attributes of randomized factors that must match a request for the factors to answer it."""
GRAM_TRACE_ATTR: Final = "gram_trace"
"""Attribute of factors of the Gram method: ``trace(M^T M) = ||M||_F^2``, exact."""
GRAM_EIGENVALUES_ATTR: Final = "gram_eigenvalues"
"""Attribute of factors of the Gram method: the eigenvalues ``s_i^2`` of M^T M, float64."""
FRAME_SHIFTS_ATTR: Final = "frame_shifts"
"""Attribute of a fitted background whose frames were registered: each frame's whole-pixel
shift [dy, dx] against the plate, one pair per frame (:mod:`pipelines.registration`)."""
FACTORS_CHUNK_BYTES: Final = 32 * 2**20
"""Target size of one chunk of U or Vt: 32 MiB of float32, every component in a chunk."""

VIDEO_DIMS: Final = ("frame", "y", "x")
VIDEO_COLOR_DIMS: Final = ("frame", "y", "x", "channel")
U_DIMS: Final = ("pixel", "component")
S_DIMS: Final = ("component",)
VT_DIMS: Final = ("component", "frame")

DEFAULT_CHUNK_BYTES: Final = 32 * 2**20
"""Target size of one video chunk: 32 MiB of uint8 frames (whole frames per chunk)."""

ZSTD_LEVEL: Final = 3
"""zstd level of every array but the video (zstd's own default).  The factors are
float32, which no zstd level shrinks much; the masks are mostly zeros, which any level
shrinks well."""

VIDEO_ZSTD_LEVEL: Final = 3
"""Default zstd level of the stored video (``ingest --zstd-level`` chooses another).

zstd decompresses every level at the same rate, so on local disks a pass over the
store costs the same at any level; a higher level stores fewer bytes for more of the
ingest's CPU.  On real 720p gray footage level 5 stores the video in about 15 % fewer
bytes than level 3 and compresses at 0.55x its rate, a second more per 341 frames of
720p on two cores, where ingest keeps both busy (README, "Store size").  Where
storage bandwidth is the limit (object storage or a shared filesystem read by many
workers), those bytes count more, and level 5 is worth its ingest.  Existing stores
keep their level: a reader takes any."""

MAX_ZSTD_LEVEL: Final = 19
"""The highest level ``--zstd-level`` takes: zstd's levels 20-22 need a window of up to
128 MiB per compressor, for a few per cent fewer bytes."""


def default_factors_name(method: str, rank: int) -> str:
    """Return the default name of a factor set under ``factors/``, e.g. ``"randomized-k10"``."""
    return f"{method}-k{rank}"
