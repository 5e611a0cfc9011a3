"""Checks of numeric cluster options, shared by the embedded, existing and batch clusters.

Each raises :class:`cluster.errors.InvalidClusterOptionError` with the option's flag,
the requirement and the value given, as one line.
"""

from __future__ import annotations

import math

from cluster.errors import InvalidClusterOptionError

__all__ = ["check_count", "check_seconds"]


def check_count(value: object, *, flag: str) -> None:
    """Refuse anything but an integer >= 1 (a bool is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidClusterOptionError(f"{flag} must be an integer >= 1, got {value!r}")


def check_seconds(value: object, *, flag: str) -> None:
    """Refuse anything but a finite number of seconds > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidClusterOptionError(f"{flag} must be a positive number of seconds, got {value!r}")
