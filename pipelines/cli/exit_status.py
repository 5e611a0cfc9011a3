"""Exit statuses of the command line, one table keyed by error class.

0 success, 1 a problem with inputs, stores or the cluster (one line on stderr), 2 a
usage error (a bad option value), 130 interrupted.  An error's status is that of the
nearest class in its method resolution order that the table names.
"""

from __future__ import annotations

from typing import Final

from cluster.errors import InvalidClusterOptionError, TLSConfigurationError
from storage.errors import InvalidParameterError, VidsvdError

__all__ = ["EXIT_STATUS", "INTERRUPTED", "OK", "exit_status"]

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
