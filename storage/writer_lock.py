"""One writer per store: an advisory lock file beside a local store.

Two processes writing one store mix their chunks (an ``ingest --overwrite`` during
another ingest left a store marked complete whose first chunks came from the other
video) or lose a result (two ``decompose --force --name X``).  Every step that writes
a store holds :func:`writer_lock` while it does; a second writer is refused at once,
in one line naming the process that holds the store.

The lock is ``flock`` on ``.<store name>.vidsvd-lock`` in the store's parent folder
(beside the store, so that deleting and recreating the store with ``--overwrite``
keeps it).  The file is small and left in place: deleting a lock file races with the
next writer that opens it.  On NFS, Linux maps ``flock`` to NFS byte-range locks,
which every client sees.  Object storage (``s3://``, ``gs://``...) has no locks: there,
vidsvd cannot stop two writers, and a user must run one writing command per store
URL at a time (readers are always safe).

Taking the lock also checks that the store can be written: a file is created and
removed in the store's folder and in each of its top-level folders (video, factors...),
so a read-only store is refused in one line before a step computes anything, not
after (a whole SVD was once computed before a read-only store failed its write).

The outermost holder also keeps the store's consolidated metadata true
(:mod:`storage.consolidated`): dropped when the lock is taken, written again when
the block ends, so it never describes a store being changed.

Within one process the lock is re-entrant: ``run`` holds it across its steps, and a
step that calls another (separate fitting the robust background) takes it again.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from storage.consolidated import consolidate, drop_consolidated
from storage.errors import StoreBusyError, StoreNotWritableError
from storage.store import StoreLocation, as_location

__all__ = ["lock_path", "writer_lock"]

_held: dict[Path, tuple[int, int]] = {}  # lock file -> (file descriptor, depth)
_held_guard = threading.Lock()


def lock_path(location: StoreLocation) -> Path:
    """The lock file of a local store: ``.<name>.vidsvd-lock`` beside it."""
    store = location.local_path.absolute()
    return store.parent / f".{store.name}.vidsvd-lock"


@contextlib.contextmanager
def writer_lock(location: StoreLocation | str | os.PathLike[str], *, step: str) -> Iterator[None]:
    """Hold the store's writer lock while the block runs (nothing for object storage).

    Parameters
    ----------
    location : StoreLocation, str or path-like
        The store.  Its parent folder must exist (the store itself need not).
    step : str
        What writes (``"ingest"``, ``"decompose"``...), recorded for the message a
        refused writer prints.

    Raises
    ------
    StoreBusyError
        Another process holds the lock; the message names it.
    StoreNotWritableError
        The lock file cannot be created beside the store, or the store's folder or
        one of its top-level folders cannot be written.
    """
    loc = as_location(location)
    if not loc.is_local:
        with _consolidated_after(loc):
            yield
        return
    path = lock_path(loc)
    with _held_guard:
        held = _held.get(path)
        if held is not None:
            _held[path] = (held[0], held[1] + 1)
    if held is None:
        descriptor = _acquire(path, loc, step=step)
        try:
            _check_writable(loc)
        except BaseException:
            os.close(descriptor)
            raise
        with _held_guard:
            _held[path] = (descriptor, 1)
    try:
        if held is None:
            with _consolidated_after(loc):
                yield
        else:
            yield
    finally:
        with _held_guard:
            descriptor, depth = _held[path]
            if depth > 1:
                _held[path] = (descriptor, depth - 1)
            else:
                del _held[path]
                os.close(descriptor)  # releases the flock


def _acquire(path: Path, loc: StoreLocation, *, step: str) -> int:
    import fcntl

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a job's store goes in its --out: name both
        raise StoreNotWritableError(
            f"cannot create the folder {path.parent} of the store {loc} ({exc.strerror or exc});"
            " choose a writable --store (or --out, where `run` keeps its store)"
        ) from None
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreNotWritableError(
            f"cannot write the store at {loc} (its lock file {path.name}:"
            f" {exc.strerror or exc}); choose a writable --store"
        ) from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(descriptor)
        os.close(descriptor)
        raise StoreBusyError(
            f"{loc} is being written by {holder}; wait for it to finish (or stop it), then run this again"
        ) from None
    except BaseException:
        os.close(descriptor)
        raise
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "step": step,
        "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)),
        "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, (json.dumps(record) + "\n").encode(), 0)
    return descriptor


@contextlib.contextmanager
def _consolidated_after(loc: StoreLocation) -> Iterator[None]:
    """Drop the store's consolidated metadata now; write it again when the block ends.

    Also after an error or Ctrl-C: the snapshot is then taken of what the store holds
    (an interrupted array says ``complete: false`` in it too).  Only a killed process
    leaves the store without one.  A failure to consolidate after an error is ignored
    (the store is then left without a snapshot, which is safe); the error goes on.
    """
    drop_consolidated(loc)
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            consolidate(loc)
        raise
    consolidate(loc)


def _check_writable(loc: StoreLocation) -> None:
    """Create and remove a file in the store's folder and each top-level folder of it."""
    store = loc.local_path
    if not store.is_dir():
        return  # not created yet: its parent was just written (the lock file)
    folders = [store, *sorted(child for child in store.iterdir() if child.is_dir())]
    for folder in folders:
        try:
            descriptor, probe = tempfile.mkstemp(dir=folder, prefix=".vidsvd-write-probe-")
            os.close(descriptor)
            os.unlink(probe)
        except OSError as exc:
            where = "" if folder == store else f" (its folder {folder.name})"
            raise StoreNotWritableError(
                f"cannot write the store at {loc}{where}: {exc.strerror or exc}; make it writable,"
                " or copy it somewhere writable and use the copy"
            ) from None


def _holder(descriptor: int) -> str:
    """Who holds the lock, from what it wrote in the file (best effort)."""
    try:
        record = json.loads(os.pread(descriptor, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict) or "pid" not in record:
        return "another process"
    return (
        f"process {record['pid']} on {record.get('host', '?')} ({record.get('step', '?')}:"
        f" {record.get('command', '?')}, since {record.get('since', '?')})"
    )
