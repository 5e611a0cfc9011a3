"""The activity timeline: foreground share per frame, busiest frames, CSV."""

from __future__ import annotations

import io

import dask.array as da
import numpy as np
import pytest
from PIL import Image

from pipelines.activity import (
    MOSTLY_FOREGROUND_SHARE,
    activity_csv,
    busiest_frames,
    foreground_fraction,
    mostly_foreground,
    pixel_foreground_share,
    unseen_background_warning,
)
from pipelines.plots import activity_png, foreground_share_png
from storage.errors import InvalidParameterError
from tests.helpers import raise_if_dask_computes


def test_the_fraction_counts_nonzero_mask_pixels_per_frame_lazily() -> None:
    masks = np.zeros((6, 4, 5), dtype=np.uint8)
    masks[1, 0, :2] = 255  # 2 of 20 pixels
    masks[4] = 255  # all
    lazy = da.from_array(masks, chunks=(4, 4, 5))
    with raise_if_dask_computes():
        fraction = foreground_fraction(lazy)
    assert fraction.chunks == ((4, 2),)
    np.testing.assert_allclose(fraction.compute(), [0, 0.1, 0, 0, 1, 0])
    with pytest.raises(InvalidParameterError, match=r"\(frame, y, x\)"):
        foreground_fraction(lazy[0])


def test_busiest_frames_are_spread_over_the_video_and_never_empty() -> None:
    fraction = np.zeros(100)
    fraction[40:50] = np.linspace(0.5, 0.9, 10)  # one long event: its peak only, then others
    fraction[10] = 0.2
    fraction[90] = 0.3
    assert busiest_frames(fraction, count=3) == [10, 49, 90]
    assert busiest_frames(np.zeros(50), count=3) == []  # nothing moved: no sample
    assert busiest_frames([0.0, 0.4], count=5) == [1]
    with pytest.raises(InvalidParameterError, match="count"):
        busiest_frames(fraction, count=0)


def test_the_csv_has_one_row_per_frame_with_its_time() -> None:
    text = activity_csv([0.0, 0.125, 1.0], fps=4.0)
    assert text.splitlines() == [
        "frame,time_s,foreground_fraction",
        "0,0.000,0.000000",
        "1,0.250,0.125000",
        "2,0.500,1.000000",
    ]
    with pytest.raises(InvalidParameterError, match="fps"):
        activity_csv([0.1], fps=0)


def test_the_timeline_plot_is_a_png() -> None:
    png = activity_png(np.linspace(0, 0.2, 50), fps=5.0, segment_starts=[25], marked_frames=[10, 40, 99])
    assert png.startswith(b"\x89PNG")
    with pytest.raises(InvalidParameterError, match="fps"):
        activity_png([0.1, 0.2], fps=-1)


def test_the_share_counts_each_pixels_foreground_frames_lazily() -> None:
    masks = np.zeros((10, 2, 3), dtype=np.uint8)
    masks[:, 0, 0] = 255  # every frame
    masks[:9, 0, 1] = 255  # 9 of 10: 0.9 is not "over 90 %"
    masks[:3, 1, 2] = 1  # any nonzero value is foreground
    lazy = da.from_array(masks, chunks=(4, 2, 3))
    with raise_if_dask_computes():
        share = pixel_foreground_share(lazy)
    assert share.shape == (2, 3) and share.dtype == np.float32
    np.testing.assert_allclose(share.compute(), [[1.0, 0.9, 0.0], [0.0, 0.0, 0.3]], rtol=1e-6)
    assert mostly_foreground(share.compute()) == 1 / 6
    with pytest.raises(InvalidParameterError, match=r"\(frame, y, x\)"):
        pixel_foreground_share(lazy[0])


def test_mostly_foreground_is_strictly_over_the_share_and_zero_for_no_pixels() -> None:
    assert MOSTLY_FOREGROUND_SHARE == 0.9
    assert mostly_foreground(np.array([[0.9, 0.91], [0.95, 0.1]])) == 0.5
    assert mostly_foreground(np.zeros((0, 4))) == 0.0


def test_the_warning_gives_the_share_of_pixels_in_percent() -> None:
    assert unseen_background_warning(0.01) is None  # at most 1 % of the pixels: no warning
    message = unseen_background_warning(0.0155)
    assert message is not None
    assert message.startswith("1.6 % of the pixels are foreground in over 90 % of the frames")
    assert "\n" not in message and "unreliable" in message


@pytest.mark.parametrize("shape", [(1, 1), (48, 64), (720, 1280), (7, 1001)])
def test_the_foreground_map_is_a_png_of_the_plot_size_whatever_the_frame(shape: tuple[int, int]) -> None:
    share = np.random.default_rng(0).random(shape).astype(np.float32)
    share[: shape[0] // 2 + 1, : shape[1] // 2 + 1] = 1.0  # outlined
    png = foreground_share_png(share, mostly=MOSTLY_FOREGROUND_SHARE)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.size == (640, 360)


def test_the_foreground_map_refuses_what_is_not_a_map() -> None:
    for bad in (np.zeros(5), np.zeros((0, 3)), np.zeros((2, 2, 2))):
        with pytest.raises(InvalidParameterError, match=r"\(y, x\) map"):
            foreground_share_png(bad, mostly=0.9)
