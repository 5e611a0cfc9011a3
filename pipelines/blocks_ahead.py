"""A generator of blocks run in a thread of its own, a block or two ahead of its consumer.

The encoders' feeder (:func:`pipelines.encode_stream.write_videos`) renders each block's
panels and hands them to the encoders in the calling thread; the blocks it consumes
are computed (decoded, projected, masked) in the same thread unless they come from
here.  With :func:`blocks_ahead` the next block is computed while the last one is
rendered, so that the two halves of the work share the cores instead of taking turns.

Order, values and errors are those of the wrapped generator: an exception it raises is
raised to the consumer at the point it would have been.  Closing the wrapper (the
consumer stops, or raises, e.g. on Ctrl-C) stops the thread after the block it is
computing and closes the wrapped generator in that thread, so that whatever the
wrapped generator holds (a decoder) has ended when the close returns.

Memory: ``depth`` computed blocks waiting, plus the one being computed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator
from typing import Final, TypeVar

__all__ = ["blocks_ahead"]

Block = TypeVar("Block")

_POLL_S: Final = 0.1
"""Seconds between the thread's looks at the stop flag while its queue is full."""


def blocks_ahead(blocks: Generator[Block, None, None], *, depth: int = 1) -> Generator[Block, None, None]:
    """Yield what ``blocks`` yields, computed in a thread up to ``depth`` blocks ahead.

    Parameters
    ----------
    blocks : generator
        Consumed in a thread of its own (named ``vidsvd-blocks-ahead``), and closed there.
    depth : int
        Blocks computed and waiting at most (at least 1).
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    return _ahead(blocks, depth=depth)


def _ahead(blocks: Generator[Block, None, None], *, depth: int) -> Generator[Block, None, None]:
    """:func:`blocks_ahead` once its arguments are checked: the thread starts at the first block asked for."""
    waiting: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(kind: str, value: object) -> bool:
        """Queue one item unless told to stop; True if queued."""
        while not stop.is_set():
            try:
                waiting.put((kind, value), timeout=_POLL_S)
            except queue.Full:
                continue
            return True
        return False

    def produce() -> None:
        try:
            for block in blocks:
                if not hand_over("block", block):
                    return
            hand_over("end", None)
        except BaseException as error:  # handed to the consumer, raised there
            hand_over("error", error)
        finally:
            blocks.close()

    thread = threading.Thread(target=produce, name="vidsvd-blocks-ahead", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = waiting.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
