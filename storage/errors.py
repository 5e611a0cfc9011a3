"""One error hierarchy for everything the user can get wrong about inputs and stores.

Every class derives from :class:`VidsvdError` *and* from the matching built-in
exception, in the manner of zarr-python v3: a missing store is also a
``FileNotFoundError``, a bad parameter also a ``ValueError``.  The message of each
error is one line that says what is wrong and how to fix it; the command line prints
it as is, without a traceback.
"""

from __future__ import annotations

import errno
from typing import Final

DISK_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
"""OSError numbers that mean the device (or the user's quota) is full."""


class VidsvdError(Exception):
    """Base class of every error vidsvd reports to its user."""


class InvalidParameterError(VidsvdError, ValueError):
    """An option has a value outside its allowed range."""


class SourceNotFoundError(VidsvdError, FileNotFoundError):
    """A source video does not exist."""


class SourceNotReadableError(VidsvdError, ValueError):
    """A source exists but holds no decodable video frames."""


class StoreNotFoundError(VidsvdError, FileNotFoundError):
    """The store, or an array a step needs inside it, does not exist."""


class StoreExistsError(VidsvdError, FileExistsError):
    """The output already exists and the user did not ask to overwrite it."""


class StoreIncompleteError(VidsvdError, RuntimeError):
    """An array exists but was never marked complete (an interrupted step)."""


class NotAVidsvdStoreError(VidsvdError, ValueError):
    """The path exists but is not a store written by vidsvd."""


class StoreNotWritableError(VidsvdError, PermissionError):
    """The store location cannot be written."""


class FingerprintMismatchError(VidsvdError, ValueError):
    """Persisted factors belong to another video than the one in the store."""


class BucketNotFoundError(StoreNotFoundError):
    """The bucket (or container) of an object-storage URL does not exist."""


class StoreAccessError(VidsvdError, PermissionError):
    """Object storage refused access: credentials are missing, wrong or not allowed."""


class StoreUnreachableError(VidsvdError, ConnectionError):
    """The object-storage endpoint did not answer."""


class StoreBackendMissingError(VidsvdError, ImportError):
    """The fsspec implementation of a URL's protocol (s3fs for ``s3://``) is not installed."""


class StoreNotSharedError(VidsvdError, FileNotFoundError):
    """Some dask workers cannot see the store this process uses (not on a shared filesystem)."""


class TruthMismatchError(VidsvdError, ValueError):
    """Ground truth that does not fit the stored video (frames it does not have)."""


class StoreDamagedError(VidsvdError, RuntimeError):
    """What the store holds is not what was written: a chunk missing, corrupt, or NaN in factors."""


class InconsistentResultError(VidsvdError, RuntimeError):
    """Partial results of a computation did not add up (one lost or added twice): nothing is written."""


class StoreBusyError(VidsvdError, RuntimeError):
    """Another process is writing the store (its writer lock is held)."""


class DiskFullError(VidsvdError, OSError):
    """The device holding the store (or the output folder) has no space left."""
