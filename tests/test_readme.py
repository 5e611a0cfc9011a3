"""The README's quick start and CI must stay in step."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO


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


def _python_snippet() -> str:
    text = (REPO / "README.md").read_text()
    block = re.search(r"### Python API.*?```python\n(.*?)```", text, re.S)
    assert block is not None, "README.md has no Python API snippet"
    return block.group(1)


@pytest.mark.slow
def test_the_python_snippet_runs_as_a_script(tmp_path: Path, make_video) -> None:  # type: ignore[no-untyped-def]
    """The README's API snippet, saved as a file and run by python: the embedded workers
    re-import it, which the ``__main__`` guard makes harmless."""
    make_video("clip.mp4", codec="h264", n_frames=40, height=48, width=64)
    script = tmp_path / "script.py"
    script.write_text(_python_snippet())
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["20", "10"]  # 4 s of 10 fps at --fps 5
    assert "Traceback" not in result.stderr
    assert (tmp_path / "clip-out" / "compare.mp4").stat().st_size > 0
