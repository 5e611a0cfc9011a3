"""The activity timeline: foreground share per frame, busiest frames, CSV."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from pipelines.activity import activity_csv, busiest_frames, foreground_fraction
from pipelines.plots import activity_png
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
