"""The early start of the embedded workers: only for a readable store, with its writer lock held."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from pipelines.cli.early_workers import early_workers
from storage.store import as_location, create_store
from storage.writer_lock import lock_path


class RecordingJob:
    """Stands in for JobContext: records warm_up calls instead of starting a cluster."""

    def __init__(self) -> None:
        self.warm_ups = 0

    def warm_up(self) -> None:
        self.warm_ups += 1


def _locked_by_someone(store: Path) -> bool:
    """True when the store's writer lock is held (by any open file description)."""
    descriptor = os.open(lock_path(as_location(store)), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False


def test_a_readable_store_starts_the_workers_with_its_lock_held(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    create_store(store)
    job = RecordingJob()
    with early_workers(job, str(store), writing_step="separate"):  # type: ignore[arg-type]
        assert job.warm_ups == 1
        assert _locked_by_someone(store)
    assert not _locked_by_someone(store)
    # a reading step starts the workers without taking the lock
    with early_workers(job, str(store), writing_step=None):  # type: ignore[arg-type]
        assert job.warm_ups == 2
        assert not _locked_by_someone(store)


@pytest.mark.parametrize("case", ["missing", "not a store", "not wanted"])
def test_nothing_starts_when_the_step_will_not_compute(tmp_path: Path, case: str) -> None:
    store = tmp_path / "s.zarr"
    if case == "not a store":
        store.mkdir()
        (store / "notes.txt").write_text("not zarr")
    elif case == "not wanted":
        create_store(store)
    job = RecordingJob()
    with early_workers(job, str(store), writing_step="decompose", wanted=case != "not wanted"):  # type: ignore[arg-type]
        assert job.warm_ups == 0
    assert not (case == "missing" and store.exists())
