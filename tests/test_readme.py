"""The README's quick start and CI must stay in step."""

from __future__ import annotations

import re

from conftest import REPO


def _quick_start_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", text, re.S)
    assert block is not None, "README.md has no quick start block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_has_exactly_two_lines() -> None:
    lines = _quick_start_lines()
    assert len(lines) == 2
    assert lines[0].startswith("pip install -e . && vidsvd ")
    assert "pytest" in lines[1]


def test_ci_runs_the_readme_test_line() -> None:
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert _quick_start_lines()[1] in ci_lines
