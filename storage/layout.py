"""The store layout: every group, array and attribute name, in one place.

::

    STORE/                      root group; attrs: {"vidsvd": {"format": 1}}
      video                     (frame, y, x[, channel]) uint8
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
FACTORS_GROUP: Final = "factors"
FOREGROUND_ARRAY: Final = "foreground"
MASKS_ARRAY: Final = "masks"

FACTOR_U: Final = "U"
FACTOR_S: Final = "s"
FACTOR_VT: Final = "Vt"
FACTORS_CHUNK_BYTES: Final = 32 * 2**20
"""Target size of one chunk of U or Vt: 32 MiB of float32, every component in a chunk."""

VIDEO_DIMS: Final = ("frame", "y", "x")
VIDEO_COLOR_DIMS: Final = ("frame", "y", "x", "channel")
U_DIMS: Final = ("pixel", "component")
S_DIMS: Final = ("component",)
VT_DIMS: Final = ("component", "frame")

DEFAULT_CHUNK_BYTES: Final = 32 * 2**20
"""Target size of one video chunk: 32 MiB of uint8 frames (whole frames per chunk)."""

ZSTD_LEVEL: Final = 1
"""zstd level of the video array: level 1 compresses 720p gray about 1.5x faster than
level 3 (425 against 290 MB/s on one core) for 27% more bytes; ingest must keep up
with ffmpeg's decoding."""
