"""glibc malloc settings of the command's own process, where the embedded worker computes.

The embedded cluster runs its one worker in the command's process (see
:mod:`cluster.embedded`), so its tasks allocate there: chunks of frames, float32
tiles, partial sums, tens to hundreds of MB each, freed as soon as a task ends.  By
default glibc serves every allocation above 32 MiB (and, as its threshold adapts,
most above 128 KiB) with a fresh mapping that it unmaps on free, so the next array
of that size is faulted in and zeroed by the kernel again, page by page or, for
NumPy's large arrays, 2 MiB huge page by huge page.
"""

from __future__ import annotations

import ctypes
import os
from typing import Final

__all__ = ["KEPT_FREE_BYTES", "keep_freed_memory"]

KEPT_FREE_BYTES: Final = (1 << 31) - 1
"""Free memory at the top of the heap that glibc keeps instead of returning it (the
largest value ``mallopt`` takes): freed arrays are reused, not faulted in again."""

_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_MAX: Final = -4
_M_ARENA_MAX: Final = -8


def keep_freed_memory() -> bool:
    """Make this process's malloc reuse freed memory: one heap, no per-array mappings.

    Three ``mallopt`` settings, which must be made before the process starts threads:

    - no allocation is a mapping of its own (``M_MMAP_MAX`` 0): large arrays come from
      the heap and go back to it when freed;
    - the heap keeps up to :data:`KEPT_FREE_BYTES` of free memory at its top
      (``M_TRIM_THRESHOLD``) rather than returning it to the kernel;
    - threads share one heap (``M_ARENA_MAX`` 1), so that memory freed by one task's
      thread serves the next task's, whichever thread runs it.

    Memory: the process's resident size is the high-water mark of what it held at
    once, plus the heap's fragmentation; freed memory is not given back to the system
    until the command exits (commands are short-lived: each is one process).  Measured
    in the README ("Memory of the command's process"): the peak was lower, not higher,
    and the kernel's page zeroing, the largest single cost of a ``run``, mostly went.

    Returns
    -------
    bool
        Whether the settings were made: False where the C library is not glibc (musl,
        macOS, Windows), which keeps its own behaviour.
    """
    if not _is_glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: glibc's, no library search
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, KEPT_FREE_BYTES))
    return all(mallopt(option, value) == 1 for option, value in settings)


def _is_glibc() -> bool:
    """Whether this process runs on GNU libc (which names its version; others do not)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (AttributeError, ValueError, OSError):  # no confstr, or no such name
        return False
