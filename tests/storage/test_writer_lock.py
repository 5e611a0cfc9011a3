"""One writer per store: a second writing command is refused in one line naming the first."""

from __future__ import annotations

import os
import shutil
import stat
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


def _as_an_ordinary_user() -> list[str]:
    """A command prefix under which permission bits apply (root ignores them otherwise)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without util-linux's setpriv: permission bits cannot be enforced")
    dropped = "-dac_override,-dac_read_search"
    return [setpriv, f"--inh-caps={dropped}", f"--bounding-set={dropped}"]


def _set_writable(folder: Path, *, writable: bool) -> None:
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def test_a_read_only_store_is_refused_before_anything_is_computed(make_video, tmp_path: Path) -> None:
    video, _ = make_video("clip.mp4", n_frames=30, codec="h264")
    store = tmp_path / "s.zarr"
    assert main(["ingest", str(video), "--store", str(store), "--quiet"]) == 0
    assert main(["decompose", "--store", str(store), "--rank", "2", "--quiet", *CLUSTER]) == 0
    before = tree_digest(store)
    prefix = _as_an_ordinary_user()
    _set_writable(store, writable=False)
    try:
        for argv in (
            ["decompose", "--store", str(store), "--rank", "3", *CLUSTER],
            ["separate", "--store", str(store), "--out", str(tmp_path / "out"), *CLUSTER],
            ["ingest", str(video), "--store", str(store), "--overwrite"],
        ):
            done = subprocess.run(
                [*prefix, sys.executable, "-m", "pipelines.cli", *argv],
                capture_output=True,
                text=True,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                timeout=120,
            )
            assert done.returncode == 1, (argv, done.stderr)
            assert_one_line_error(done.stderr, f"cannot write the store at {store}", "make it writable")
            # not --quiet: the one line is also proof that no cluster started and nothing ran
            assert tree_digest(store) == before
    finally:
        _set_writable(store, writable=True)
    # a read-only folder inside a writable store is named
    (store / "factors").chmod(0o555)
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "pipelines.cli", "decompose", "--store", str(store), "--rank", "3",
             "--quiet", *CLUSTER],
            capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120,
        )  # fmt: skip
    finally:
        (store / "factors").chmod(0o755)
    assert done.returncode == 1
    assert_one_line_error(done.stderr, "(its folder factors)")
