"""A generator run a block ahead in a thread: same blocks, same errors, closed with its consumer."""

from __future__ import annotations

import threading
from collections.abc import Generator

import pytest

from pipelines.blocks_ahead import blocks_ahead


def _ahead_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "vidsvd-blocks-ahead"]


@pytest.mark.parametrize("depth", [1, 3])
def test_the_blocks_come_in_order_and_the_thread_ends(depth: int) -> None:
    assert list(blocks_ahead((index * index for index in range(20)), depth=depth)) == [
        index * index for index in range(20)
    ]
    assert _ahead_threads() == []


def test_an_error_comes_after_the_blocks_before_it() -> None:
    def failing() -> Generator[int, None, None]:
        yield 1
        yield 2
        raise OSError("the decoder stopped")

    received = []
    with pytest.raises(OSError, match="the decoder stopped"):
        for block in blocks_ahead(failing()):
            received.append(block)
    assert received == [1, 2]
    assert _ahead_threads() == []


def test_a_consumer_that_stops_closes_the_generator_in_its_thread() -> None:
    """The consumer stops after two blocks (as the encoders do on Ctrl-C): the wrapped
    generator is closed, by the thread that ran it, before the close returns."""
    closed_by: list[str] = []

    def endless() -> Generator[int, None, None]:
        index = 0
        try:
            while True:
                yield index
                index += 1
        finally:
            closed_by.append(threading.current_thread().name)

    wrapped = blocks_ahead(endless(), depth=2)
    assert [next(wrapped), next(wrapped)] == [0, 1]
    wrapped.close()
    assert closed_by == ["vidsvd-blocks-ahead"]
    assert _ahead_threads() == []


def test_depth_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="depth must be at least 1"):
        blocks_ahead((index for index in range(3)), depth=0)
