"""The Python API: its errors name Python parameters, not command-line flags."""

from __future__ import annotations

from pathlib import Path

import pytest

import pipelines.api as vidsvd
from storage.errors import InvalidParameterError, StoreExistsError


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("s.zarr exists; pass --overwrite to replace it", "s.zarr exists; pass overwrite=True to replace it"),
        ("--rank must be between 1 and 30, got 40", "rank must be between 1 and 30, got 40"),
        ("give an --fps of at least 0.333", "give an fps of at least 0.333"),
        ("--chunk-frames must be positive", "chunk_frames must be positive"),
        ("with --foreground or --masks-video", "with keep_foreground=True or masks_video=True"),
        (
            "recompute them with `vidsvd decompose --store s.zarr --force`, or pass --force",
            "recompute them with `vidsvd decompose --store s.zarr --force`, or pass force=True",
        ),
    ],
)
def test_flags_become_python_parameters_outside_quoted_commands(message: str, expected: str) -> None:
    assert vidsvd.in_python_words(message) == expected


def test_a_python_caller_is_told_the_python_way_out(make_video, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    video, _ = make_video(n_frames=6)
    store = tmp_path / "s.zarr"
    vidsvd.ingest([video], store=store)
    with pytest.raises(StoreExistsError, match=r"pass overwrite=True to replace it$") as refused:
        vidsvd.ingest([video], store=store)
    assert "--" not in str(refused.value)
    with pytest.raises(InvalidParameterError, match=r"^fps must be a positive number"):
        vidsvd.ingest([video], store=tmp_path / "t.zarr", fps=0)
    assert vidsvd.ingest.__doc__ and "ingest" in vidsvd.ingest.__name__  # still the step, documented
