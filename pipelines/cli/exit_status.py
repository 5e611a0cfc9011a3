"""Exit statuses of the command line, one table keyed by error class.

0 success, 1 a problem with inputs, stores or the cluster (one line on stderr), 2 a
usage error (a bad option value), 130 interrupted.  An error's status is that of the
nearest class in its method resolution order that the table names.
"""

from __future__ import annotations

import errno
from typing import Final

from cluster.errors import InvalidClusterOptionError, TLSConfigurationError
from storage.errors import DISK_FULL_ERRNOS, InvalidParameterError, VidsvdError

__all__ = ["EXIT_STATUS", "INTERRUPTED", "OK", "environment_fault", "exit_status"]

OK: Final = 0
INTERRUPTED: Final = 130

EXIT_STATUS: Final[dict[type[BaseException], int]] = {
    VidsvdError: 1,
    InvalidParameterError: 2,
    InvalidClusterOptionError: 2,
    TLSConfigurationError: 2,
}
"""Error class to exit status; subclasses take their nearest listed ancestor's."""


def exit_status(error: BaseException) -> int | None:
    """The exit status for ``error``, or None when it is not a user-facing error (a bug)."""
    for cls in type(error).__mro__:
        if cls in EXIT_STATUS:
            return EXIT_STATUS[cls]
    return None


_REFUSED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def environment_fault(error: BaseException) -> str | None:
    """One line for an operating-system error that is the machine's fault, not a bug.

    A full disk or quota, and a file the system refuses to write (permissions, a
    read-only filesystem), can surface from any write, also inside a dask task; they
    get exit status 1 and this line instead of a traceback.  Nothing half-written is
    ever marked complete, so a rerun after the fix continues.  None for any other error.
    """
    if not isinstance(error, OSError) or error.errno not in DISK_FULL_ERRNOS | _REFUSED:
        return None
    where = f" ({error.filename})" if error.filename else ""
    if error.errno in DISK_FULL_ERRNOS:
        return f"no space left on the device{where}; free space, then rerun: complete outputs are kept"
    return f"the system refused a write{where}: {error.strerror}; make it writable or choose another place"
