"""How the command line talks to its user: one ``vidsvd: ...`` line on stderr per message."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["say", "show_warning"]


def say(message: str) -> None:
    """Write ``vidsvd: MESSAGE`` on stderr."""
    sys.stderr.write(f"vidsvd: {message}\n")


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Show a Python warning as one ``vidsvd: warning: ...`` line (for ``warnings.showwarning``)."""
    say(f"warning: {message}")
