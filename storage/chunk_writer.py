"""The chunk writer of ingest: whole-frame chunks compressed and written in parallel, progress in order.

The decoding thread cuts frames into chunks (:class:`Chunker`) and hands them to a
:class:`ChunkWriter`, whose threads compress and write them while ffmpeg decodes the
next ones; the ``progress`` attribute never claims a frame that is not on disk, so an
interrupted ingest resumes from the last recorded chunk.
"""

from __future__ import annotations

import collections
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
import zarr

from storage.errors import (
    DISK_FULL_ERRNOS,
    DiskFullError,
    VidsvdError,
)
from storage.layout import (
    PROGRESS_ATTR,
)

__all__ = ["ChunkWriter", "Chunker"]

_QUEUE_CHUNKS = 2
"""Decoded chunks waiting for the writer."""

_WRITE_THREADS = 2
"""Chunks compressed and written at once.  With the queue and the chunk being decoded,
at most five chunks are in memory at once."""

_ABORT_POLL_S = 0.1
"""How often the chunk writer checks for an abort while it waits for chunks."""


class ChunkWriter:
    """Compress and write chunks in parallel, recording progress in order.

    The decoding thread hands whole chunks to a coordinator thread through a queue of
    :data:`_QUEUE_CHUNKS`; the coordinator has :data:`_WRITE_THREADS` threads write
    chunks at once (each chunk is its own Zarr object, and zstd releases the GIL), and
    after the oldest write finishes records ``frames_written`` in the ``progress``
    attribute, so the attribute never claims a frame that is not on disk.  Only the
    coordinator rewrites the array's metadata (growing its shape, progress), and it
    grows the shape only while no write is in flight.

    :meth:`abort` does not go through the queue: a KeyboardInterrupt can stop the
    decoding thread inside ``Queue.put`` after the chunk was queued but before the
    coordinator was woken, leaving the coordinator asleep on a full queue.  The
    coordinator therefore waits on the queue with a timeout and also watches an
    event that :meth:`abort` sets.
    """

    def __init__(self, array: zarr.Array, state: dict[str, Any], *, expected_frames: int) -> None:
        self.array = array
        self.state = state
        self.expected_frames = expected_frames
        self.frames_submitted = int(state["frames_written"])
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._pool = ThreadPoolExecutor(max_workers=_WRITE_THREADS, thread_name_prefix="vidsvd-write")
        self._in_flight: collections.deque[tuple[int, Future[None]]] = collections.deque()
        self._error: BaseException | None = None
        self._aborted = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="vidsvd-chunk-writer")
        self._thread.start()

    def put(self, frames: npt.NDArray[np.uint8]) -> None:
        """Queue one whole chunk of frames (n, y, x[, 3]) for writing; blocks while the queue is full."""
        self._send(("chunk", frames))

    def record_sources(self, records: list[dict[str, Any]]) -> None:
        """Record the sources decoded so far with the next progress update."""
        self._send(("sources", records))

    def close(self) -> None:
        """Write what is queued, wait for every write and raise the first failure."""
        self._send(("stop", None))
        self._thread.join()
        self._raise_if_failed()

    def abort(self) -> None:
        """Stop taking chunks; finish and record the writes in flight; drop the queued ones."""
        self._aborted.set()
        self._thread.join(timeout=60)

    def _send(self, item: tuple[str, Any]) -> None:
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            error = self._error
            if isinstance(error, VidsvdError):
                raise error
            if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
                raise DiskFullError(
                    f"no space left on the device holding the store: {self.state['frames_written']} frames"
                    " are stored and kept; free space, then continue (`vidsvd ingest ... --resume` with the"
                    " same options, or rerun `vidsvd run`)"
                ) from error
            raise OSError(f"writing the store failed: {error}") from error

    def _run(self) -> None:
        try:
            while not self._aborted.is_set():
                try:
                    kind, payload = self._queue.get(timeout=_ABORT_POLL_S)
                except queue.Empty:
                    continue
                if kind == "stop":
                    break
                if kind == "sources":
                    self.state["sources_done"] = payload
                    continue
                self._submit(payload)
            self._drain(keep=0)
            self.array.resize((self.frames_submitted, *self.array.shape[1:]))
        except BaseException as exc:  # surfaced to the decoding thread by _send/close
            self._error = exc
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, frames: npt.NDArray[np.uint8]) -> None:
        start = self.frames_submitted
        stop = start + len(frames)
        if stop > self.array.shape[0]:
            self._drain(keep=0)  # no write in flight while the metadata changes
            grown = max(stop, self.expected_frames, 2 * self.array.shape[0])
            self.array.resize((grown, *self.array.shape[1:]))
        self._drain(keep=_WRITE_THREADS - 1)
        self._in_flight.append((stop, self._pool.submit(self._write, start, stop, frames)))
        self.frames_submitted = stop

    def _write(self, start: int, stop: int, frames: npt.NDArray[np.uint8]) -> None:
        self.array[start:stop] = frames

    def _drain(self, *, keep: int) -> None:
        """Wait for the oldest writes until at most ``keep`` are in flight; record progress."""
        recorded = False
        while len(self._in_flight) > keep:
            stop, future = self._in_flight.popleft()
            future.result()
            self.state["frames_written"] = stop
            recorded = True
        if recorded:
            self.array.update_attributes({PROGRESS_ATTR: self.state})


class Chunker:
    """Regroup decoded blocks into whole chunks of the array's chunk grid.

    Sources follow each other without gaps, so a chunk may hold the end of one source
    and the start of the next; every chunk but the last is exactly full, which keeps
    each write aligned to one Zarr chunk.
    """

    def __init__(self, chunk_frames: int, frame_shape: tuple[int, ...]) -> None:
        self.chunk_frames = chunk_frames
        self.frame_shape = frame_shape
        self._buffer = np.empty((chunk_frames, *frame_shape), dtype=np.uint8)
        self._filled = 0

    def add(self, frames: npt.NDArray[np.uint8]) -> list[npt.NDArray[np.uint8]]:
        """Take frames; return the chunks they complete (each a fresh array)."""
        full: list[npt.NDArray[np.uint8]] = []
        position = 0
        while position < len(frames):
            if self._filled == 0 and len(frames) - position >= self.chunk_frames:
                full.append(np.ascontiguousarray(frames[position : position + self.chunk_frames]))
                position += self.chunk_frames
                continue
            take = min(self.chunk_frames - self._filled, len(frames) - position)
            self._buffer[self._filled : self._filled + take] = frames[position : position + take]
            self._filled += take
            position += take
            if self._filled == self.chunk_frames:
                full.append(self._buffer)
                self._buffer = np.empty_like(self._buffer)
                self._filled = 0
        return full

    def flush(self) -> npt.NDArray[np.uint8] | None:
        """Return the last, partly filled chunk (None when nothing is left)."""
        if self._filled == 0:
            return None
        tail = self._buffer[: self._filled]
        self._filled = 0
        return tail
