"""The output folder removes what a killed writer left, and nothing else."""

from __future__ import annotations

import os
import time
from pathlib import Path

from storage.output_folder import STALE_TEMPORARY_S, OutputFolder


def _touch(path: Path, *, age_s: float) -> Path:
    path.write_bytes(b"x")
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_stale_temporaries_go_and_everything_else_stays(tmp_path: Path) -> None:
    old = STALE_TEMPORARY_S + 60
    stale = [
        _touch(tmp_path / ".compare.mp4.0a1b2c3d4e5f.partial", age_s=old),  # the encoder's
        _touch(tmp_path / ".report.json.k2j_x9q1", age_s=old),  # write_file_atomic's
    ]
    kept = [
        _touch(tmp_path / ".foreground.mp4.a1b2c3d4e5f6.partial", age_s=1),  # a live writer's
        _touch(tmp_path / ".notes", age_s=old),  # the user's
        _touch(tmp_path / "compare.mp4", age_s=old),
        _touch(tmp_path / ".cache.partial", age_s=old),  # not named after one of our files
    ]
    assert OutputFolder.at(tmp_path).prepare() == tmp_path
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)
