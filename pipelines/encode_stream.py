"""The streamed encoders: one pass over (original, foreground, mask) blocks feeds the videos.

``foreground.mp4`` is encoded in the calling thread, ``compare.mp4`` (and, on
request, ``masks.mp4``) each in a thread of its own fed through a queue of two
blocks, so the H.264 encoders (each an ffmpeg process) run side by side while the
blocks are read once.  A few sample frames are
written as PNG on the way.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt

from pipelines.images import image_png
from pipelines.masks import sample_frames
from pipelines.render import compare_panels, visible_foreground
from storage.derived import write_file_atomic
from storage.output_folder import OutputFolder
from storage.video_encoder import write_video

__all__ = ["Blocks", "CtrlCPoint", "write_videos"]

Blocks = Generator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int16], npt.NDArray[np.uint8]], None, None]
"""Chunks of (original uint8, foreground int16, mask uint8), each (frame, y, x).

A generator, so that it can be closed: its reads ahead and decoders end with it.
"""

_SAMPLE_PNGS = 4
"""Frames of compare.mp4 also written as PNG, spread evenly over the video."""

_QUEUE_BLOCKS = 2
"""Blocks of frames waiting for each side encoder at most."""

PREVIEW_PRESET: Final = "ultrafast"
PREVIEW_CRF: Final = 21
"""x264's preset and crf of the videos written here: previews, encoded while the user
waits, on the cores that computed them.  Ultrafast at crf 21 writes about the bytes
superfast wrote at crf 18 (the setting before) in less than half of its x264 time,
2-3 dB of PSNR below it, far above what an eye tells apart in a preview (figures:
README, "Benchmarks")."""


class CtrlCPoint(Protocol):
    """Where a noted Ctrl-C is raised (``cluster.ctrl_c.CtrlCAtBoundaries`` in the steps)."""

    def raise_if_pressed(self) -> None:
        """Raise KeyboardInterrupt if Ctrl-C was pressed."""


def write_videos(
    blocks: Blocks,
    folder: OutputFolder,
    *,
    n_frames: int,
    fps: float,
    ctrl_c: CtrlCPoint,
    masks_video: bool = False,
) -> list[str]:
    """Stream ``foreground.mp4``, ``compare.mp4`` and sample frames (PNG) from ``blocks``.

    Parameters
    ----------
    blocks : generator of (original, foreground, mask)
        Consecutive blocks of frames; consumed once, and closed before this returns or
        raises, so that whatever it reads ahead (a dask computation, a decoder) has
        ended before the caller closes the cluster.
    folder : OutputFolder
        Where the files go (created).
    n_frames : int
        Frames the blocks hold in all (where the sample frames fall).
    fps : float
        Frame rate of the videos.
    ctrl_c : CtrlCPoint
        Raises a Ctrl-C noted by the caller.  Run the call where SIGINT only notes
        the press: raised asynchronously, a KeyboardInterrupt can land inside a
        queue's lock handling and leave an encoder thread waiting forever.  Here it is
        raised between blocks, and each encoder is then stopped and joined.
    masks_video : bool
        Also write ``masks.mp4``, the masks as a video (white foreground on black).

    Returns
    -------
    list of str
        File names written in ``folder``.

    Notes
    -----
    Memory: the current block, and at most two more blocks of frames queued for each
    encoder beside the first.  An error in any encoder stops them all and is raised
    here; no video is left under its final name half-written.
    """
    samples = {int(t) for t in sample_frames(n_frames, _SAMPLE_PNGS)}
    sample_files: list[str] = []
    side = [_SideEncoder(folder.compare_mp4, fps=fps)]
    if masks_video:
        side.append(_SideEncoder(folder.masks_mp4, fps=fps))

    def visible_stream() -> Iterator[npt.NDArray[np.uint8]]:
        start = 0
        for original, fg, mask in blocks:
            ctrl_c.raise_if_pressed()
            visible = visible_foreground(fg)  # foreground.mp4's frames, also a panel
            side_by_side = compare_panels(original, fg, mask, visible=visible)
            for offset in range(len(fg)):
                if start + offset in samples:
                    name = OutputFolder.sample_name(start + offset)
                    write_file_atomic(folder.file(name), image_png(side_by_side[offset]))
                    sample_files.append(name)
            for encoder, frames in zip(side, (side_by_side, mask), strict=False):
                encoder.hand_over(frames, ctrl_c=ctrl_c)
            start += len(fg)
            yield visible
        ctrl_c.raise_if_pressed()  # an encoder or the decoder may have ended on the same Ctrl-C

    folder.prepare()
    for encoder in side:
        encoder.start()
    try:
        with contextlib.closing(blocks):
            write_video(
                folder.foreground_mp4,
                visible_stream(),
                fps=fps,
                odd_size="pad",
                preset=PREVIEW_PRESET,
                crf=PREVIEW_CRF,
            )
    except BaseException as exc:
        for encoder in side:
            encoder.hand_over(RuntimeError(f"foreground.mp4 failed: {exc}"), ctrl_c=ctrl_c)
            encoder.join()
        raise
    for encoder in side:
        encoder.hand_over(None, ctrl_c=ctrl_c)
        encoder.join()
    for encoder in side:
        encoder.raise_if_failed()
    return [folder.foreground_mp4.name, *(encoder.path.name for encoder in side), *sorted(sample_files)]


class _SideEncoder:
    """One more H.264 encoder in its own thread, fed blocks of frames through a short queue."""

    def __init__(self, path: Path, *, fps: float) -> None:
        self.path = path
        self._queue: queue.Queue[npt.NDArray[np.uint8] | BaseException | None] = queue.Queue(
            maxsize=_QUEUE_BLOCKS
        )
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._encode, args=(fps,), name=f"vidsvd-{path.stem}-encoder", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def raise_if_failed(self) -> None:
        if self._errors:
            raise self._errors[0]

    def hand_over(self, item: npt.NDArray[np.uint8] | BaseException | None, *, ctrl_c: CtrlCPoint) -> None:
        """Queue a block (or an error, or None for the end) while the encoder lives."""
        while self._thread.is_alive():
            if item is not None and not isinstance(item, BaseException):
                ctrl_c.raise_if_pressed()
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _frames(self) -> Iterator[npt.NDArray[np.uint8]]:
        while (item := self._queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def _encode(self, fps: float) -> None:
        try:
            write_video(
                self.path, self._frames(), fps=fps, odd_size="pad", preset=PREVIEW_PRESET, crf=PREVIEW_CRF
            )
        except BaseException as exc:  # reported by the main thread
            self._errors.append(exc)
