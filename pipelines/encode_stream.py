"""The streamed encoders: one pass over (original, foreground, mask) blocks feeds two videos.

``foreground.mp4`` is encoded in the calling thread and ``compare.mp4`` in a second
thread fed through a queue of two blocks, so the two H.264 encoders (each an ffmpeg
process) run side by side while the blocks are read once.  A few sample frames are
written as PNG on the way.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType

import numpy as np
import numpy.typing as npt

from pipelines.masks import sample_frames
from pipelines.plots import image_png
from pipelines.render import compare_panels, visible_foreground
from storage.derived import write_file_atomic
from storage.output_folder import OutputFolder
from storage.video_encoder import write_video

__all__ = ["Blocks", "write_videos"]

Blocks = Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int16], npt.NDArray[np.uint8]]]
"""Chunks of (original uint8, foreground int16, mask uint8), each (frame, y, x)."""

_SAMPLE_PNGS = 4
"""Frames of compare.mp4 also written as PNG, spread evenly over the video."""

_QUEUE_BLOCKS = 2
"""Blocks of compare frames waiting for the second encoder at most."""


def write_videos(blocks: Blocks, folder: OutputFolder, *, n_frames: int, fps: float) -> list[str]:
    """Stream ``foreground.mp4``, ``compare.mp4`` and sample frames (PNG) from ``blocks``.

    Parameters
    ----------
    blocks : iterator of (original, foreground, mask)
        Consecutive blocks of frames; consumed once.
    folder : OutputFolder
        Where the files go (created).
    n_frames : int
        Frames the blocks hold in all (where the sample frames fall).
    fps : float
        Frame rate of both videos.

    Returns
    -------
    list of str
        File names written in ``folder``.

    Notes
    -----
    Memory: the current block, its compare frames and at most two more blocks of
    compare frames in the queue.  An error in either encoder stops both and is
    raised here; no video is left under its final name half-written.
    """
    samples = {int(t) for t in sample_frames(n_frames, _SAMPLE_PNGS)}
    sample_files: list[str] = []
    handoff: queue.Queue[npt.NDArray[np.uint8] | BaseException | None] = queue.Queue(maxsize=_QUEUE_BLOCKS)
    compare_error: list[BaseException] = []

    def compare_iterator() -> Iterator[npt.NDArray[np.uint8]]:
        while (item := handoff.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def encode_compare() -> None:
        try:
            write_video(folder.compare_mp4, compare_iterator(), fps=fps, odd_size="pad")
        except BaseException as exc:  # reported by the main thread
            compare_error.append(exc)

    def hand_over(item: npt.NDArray[np.uint8] | BaseException | None) -> None:
        while compare_thread.is_alive():
            if item is not None and not isinstance(item, BaseException):
                ctrl_c.raise_if_pressed()
            try:
                handoff.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def visible_stream() -> Iterator[npt.NDArray[np.uint8]]:
        start = 0
        for original, fg, mask in blocks:
            ctrl_c.raise_if_pressed()
            side_by_side = compare_panels(original, fg, mask)
            for offset in range(len(fg)):
                if start + offset in samples:
                    name = OutputFolder.sample_name(start + offset)
                    write_file_atomic(folder.file(name), image_png(side_by_side[offset]))
                    sample_files.append(name)
            hand_over(side_by_side)
            start += len(fg)
            yield visible_foreground(fg)
        ctrl_c.raise_if_pressed()  # an encoder or the decoder may have ended on the same Ctrl-C

    folder.prepare()
    compare_thread = threading.Thread(target=encode_compare, name="vidsvd-compare-encoder", daemon=True)
    with _CtrlCAtBlockBoundaries() as ctrl_c:
        compare_thread.start()
        try:
            write_video(folder.foreground_mp4, visible_stream(), fps=fps, odd_size="pad")
        except BaseException as exc:
            hand_over(RuntimeError(f"foreground.mp4 failed: {exc}"))
            compare_thread.join()
            raise
        hand_over(None)
        compare_thread.join()
    if compare_error:
        raise compare_error[0]
    return [folder.foreground_mp4.name, folder.compare_mp4.name, *sorted(sample_files)]


class _CtrlCAtBlockBoundaries:
    """Turn Ctrl-C into a KeyboardInterrupt raised between blocks (main thread only).

    Raised asynchronously, a KeyboardInterrupt can land inside the queue's lock
    handling and leave the encoder thread waiting forever.  Here SIGINT only sets a
    flag; :meth:`raise_if_pressed` raises at a block boundary, and leaving the block
    raises it whatever else went wrong (an encoder that ended on the same signal fails
    with a broken pipe, which is the interrupt, not a fault).  Elsewhere than in the
    main thread, signals cannot be handled and the block runs as is.
    """

    def __init__(self) -> None:
        self.pressed = False
        self._previous: object = None
        self._installed = False

    def __enter__(self) -> _CtrlCAtBlockBoundaries:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._note)
            self._installed = True
        return self

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.pressed = True

    def raise_if_pressed(self) -> None:
        if self.pressed:
            raise KeyboardInterrupt

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)  # type: ignore[arg-type]
        if self.pressed and not isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt from None
