"""Quantities written for people: byte counts in binary units."""

from __future__ import annotations

__all__ = ["format_bytes"]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(count: int) -> str:
    """``count`` bytes with a binary unit and three significant digits: ``'1.5 GiB'``, ``'512 B'``."""
    size = float(count)
    for unit in _UNITS:
        if abs(size) < 1024 or unit == _UNITS[-1]:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1024
    return f"{count} B"  # pragma: no cover - the loop always returns
