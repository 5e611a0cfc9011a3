"""One writer per store: a second writing command is refused in one line naming the first."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipelines.cli import main
from storage.errors import StoreBusyError
from storage.store import StoreLocation
from storage.writer_lock import lock_path, writer_lock
from tests.helpers import REPO, assert_one_line_error, run_cli, tree_digest

CLUSTER = ("--workers", "1", "--threads-per-worker", "1")


def _hold(store: Path, *, step: str = "ingest") -> subprocess.Popen[str]:
    """Another process holding the store's writer lock until its stdin closes."""
    code = textwrap.dedent(
        f"""
        import sys
        from storage.writer_lock import writer_lock
        with writer_lock({str(store)!r}, step={step!r}):
            print("held", flush=True)
            sys.stdin.read()
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def _release(holder: subprocess.Popen[str]) -> None:
    assert holder.stdin is not None
    holder.stdin.close()
    holder.wait(timeout=30)


def test_the_lock_is_reentrant_in_a_process_and_released_after_an_error(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    with writer_lock(store, step="outer"), writer_lock(store, step="inner"):
        assert lock_path(StoreLocation(url=str(store))).exists()
    with pytest.raises(RuntimeError), writer_lock(store, step="failing"):
        raise RuntimeError("boom")
    holder = _hold(store)  # another process can take it: it was released
    try:
        with (
            pytest.raises(StoreBusyError, match=rf"process {holder.pid} .*\(ingest"),
            writer_lock(store, step="second"),
        ):
            pass
    finally:
        _release(holder)
    with writer_lock(store, step="after"):
        pass


def test_a_second_writer_is_refused_and_changes_nothing(
    make_video, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video, _ = make_video("clip.mp4", n_frames=30, codec="h264")
    store = tmp_path / "s.zarr"
    assert main(["ingest", str(video), "--store", str(store), "--quiet"]) == 0
    before = tree_digest(store)
    holder = _hold(store, step="decompose")
    try:
        started = time.monotonic()
        for argv in (
            ["ingest", str(video), "--store", str(store), "--overwrite", "--quiet"],
            ["decompose", "--store", str(store), "--rank", "2", "--quiet", *CLUSTER],
            ["separate", "--store", str(store), "--out", str(tmp_path / "out"), "--quiet", *CLUSTER],
        ):
            code, _, stderr = run_cli(capsys, *argv)
            assert code == 1, argv
            assert_one_line_error(stderr, "is being written by", f"process {holder.pid}", "wait for it")
            assert tree_digest(store) == before
        assert time.monotonic() - started < 60  # refused at once, not after waiting
    finally:
        _release(holder)
    assert main(["decompose", "--store", str(store), "--rank", "2", "--quiet", *CLUSTER]) == 0
