"""Memory settings of the command's own process, where the embedded worker computes.

The embedded cluster runs its one worker in the command's process (see
:mod:`cluster.embedded`), so its tasks allocate there: chunks of frames, float32
tiles, partial sums, tens to hundreds of MB each, freed as soon as a task ends.  By
default glibc serves every allocation above 32 MiB (and, as its threshold adapts,
most above 128 KiB) with a fresh mapping that it unmaps on free, so the next array
of that size is faulted in and zeroed by the kernel again, page by page or, for
NumPy's large arrays, 2 MiB huge page by huge page: :func:`keep_freed_memory`.
And NumPy advises the kernel to back each array of 4 MiB or more with transparent huge
pages, whose first fault can cost the kernel a compaction as well as the zeroing:
:func:`fault_arrays_in_small_pages`.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Final

__all__ = [
    "KEPT_FREE_BYTES",
    "NUMPY_HUGE_PAGES_VARIABLE",
    "fault_arrays_in_small_pages",
    "keep_freed_memory",
]

KEPT_FREE_BYTES: Final = (1 << 31) - 1
"""Free memory at the top of the heap that glibc keeps instead of returning it (the
largest value ``mallopt`` takes): freed arrays are reused, not faulted in again."""

NUMPY_HUGE_PAGES_VARIABLE: Final = "NUMPY_MADVISE_HUGEPAGE"
"""NumPy's environment variable, read when NumPy is imported: ``0`` stops it advising
huge pages for its arrays, ``1`` makes it advise them."""

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


def fault_arrays_in_small_pages() -> bool:
    """Import NumPy now, told not to advise transparent huge pages for this process's arrays.

    Must be called before NumPy is imported: NumPy reads
    :data:`NUMPY_HUGE_PAGES_VARIABLE` once, at import.  The variable is set for that
    import only and removed again, so the processes this one starts (the embedded
    cluster's worker processes) keep NumPy's default.  A value the user gave the
    variable is left as it is, in this process and its children.

    Where the kernel's huge-page policy is ``madvise`` (the common default), NumPy
    advises huge pages for every array of 4 MiB or more.  On the first fault of each
    2 MiB the kernel must then find a free huge page, compacting memory when none is at
    hand, and zero it.  This process faults its memory in once, up to its peak, and
    reuses it from then on (:func:`keep_freed_memory`), so the fewer TLB misses of huge
    pages never pay for that first fault.  Worker processes are another matter: they
    keep distributed's malloc settings, which give freed memory back, so they fault
    memory in again and again, and there huge pages cost less (measured in the README).
    The kernel's policy is left alone; where it is ``always``, every mapping still gets
    huge pages.

    Returns
    -------
    bool
        Whether NumPy faults this process's arrays in small pages: False when NumPy was
        imported before this call, when the user's variable says otherwise, or when
        NumPy cannot be imported (left for the command to report in its own words).
    """
    if "numpy" in sys.modules:
        return False
    given = os.environ.get(NUMPY_HUGE_PAGES_VARIABLE)
    if given is not None:
        return given == "0"
    os.environ[NUMPY_HUGE_PAGES_VARIABLE] = "0"
    try:
        import numpy  # noqa: F401 - read the variable now, while it is set
    except ImportError:  # a broken install: the command reports it where it imports NumPy
        return False
    finally:
        del os.environ[NUMPY_HUGE_PAGES_VARIABLE]
    return True


def _is_glibc() -> bool:
    """Whether this process runs on GNU libc (which names its version; others do not)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (AttributeError, ValueError, OSError):  # no confstr, or no such name
        return False
