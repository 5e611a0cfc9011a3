"""A warning for a background that does not fit the still pixels: the auto threshold then hides everything.

:func:`pipelines.masks.auto_threshold` takes the larger of half of Otsu's split and
3 robust sigmas of the residual.  When the background explains the frames, sigma is
the sensor's noise (1-5 grey levels) and the threshold a few tens of grey levels.  When
it does not (the median model under light that changes over the clip, an SVD of one
component over a light switched on halfway), the residual of nearly every pixel is
large, sigma measures that misfit, and the threshold it sets can exceed what most
objects differ by: the masks come out nearly empty, with no error.  No camera's noise
has a sigma of 20 grey levels, so a threshold set by the noise floor above
:data:`POOR_FIT_LEVEL` is such a misfit, and the user is told what to try.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from pipelines.masks import AUTO_THRESHOLD_OTSU_FRACTION, otsu_split, threshold_sample_stride

__all__ = ["POOR_FIT_LEVEL", "poor_fit_warning"]

POOR_FIT_LEVEL: Final = 64.0
"""Grey levels (a quarter of the range) above which a threshold set by the residual's
spread, not by Otsu's split, means the background does not fit: 3 sigmas of 64 are a
noise of 21 grey levels, which no sensor has.  On the real clips here and the synthetic
scenes the auto threshold is 9-48; the median model under a light that varies by +-40 %
chose 187 (F 0.003 where the robust model scores 0.97)."""


def poor_fit_warning(foreground_sample: npt.ArrayLike, *, threshold: float) -> str | None:
    """The one-line warning when ``threshold`` (auto, of this sample) shows a background that does not fit.

    Parameters
    ----------
    foreground_sample : array_like
        The values :func:`pipelines.masks.auto_threshold` chose ``threshold`` from,
        grey levels, in memory.  Cost: one histogram of at most 4 million values.
    threshold : float
        The threshold it chose.

    Returns
    -------
    str or None
        None when the threshold is at most :data:`POOR_FIT_LEVEL`, or when half of
        Otsu's split, not the noise floor, set it (high-contrast objects).
    """
    if threshold <= POOR_FIT_LEVEL:
        return None
    values = np.abs(np.asarray(foreground_sample, dtype=np.float32).ravel())
    values = values[:: threshold_sample_stride(values.size)]
    if values.size == 0 or threshold <= AUTO_THRESHOLD_OTSU_FRACTION * otsu_split(values):
        return None
    return (
        f"the auto threshold is {threshold:.0f} grey levels, set by how much the whole frame differs"
        " from the background: the background does not fit the still pixels (light that changes"
        " over the clip?), so the masks hold only what differs by more than that; try --model robust,"
        " a --plate-window for a long video, or a --threshold"
    )
