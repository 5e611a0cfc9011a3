"""Masks against ground truth, with the rules of CDnet 2014 [1]_.

Truth values: 0 and 50 (static and hard shadow) are background, 255 foreground, 85
and 170 (outside the region of interest, unknown motion) are not scored.  Counts add
up over frames (:class:`Scores` supports ``+``), and the metrics come from the totals:
recall, specificity, FPR, FNR, PWC, precision and the F-measure.

References
----------
.. [1] Y. Wang, P.-M. Jodoin, F. Porikli, J. Konrad, Y. Benezeth and P. Ishwar,
   "CDnet 2014: An Expanded Change Detection Benchmark Dataset", CVPR Workshops 2014.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import dask.array as da
import numpy as np
import numpy.typing as npt

from storage.errors import InvalidParameterError

__all__ = ["CDNET_BACKGROUND", "CDNET_FOREGROUND", "CDNET_UNSCORED", "Scores", "cdnet_scores"]

CDNET_BACKGROUND: Final = (0, 50)
"""Truth values scored as background: static (0) and hard shadow (50)."""
CDNET_UNSCORED: Final = (85, 170)
"""Truth values not scored: outside the region of interest (85) and unknown motion (170)."""
CDNET_FOREGROUND: Final = 255
"""Truth value scored as foreground (moving object)."""
_CDNET_VALUES: Final = np.array([*CDNET_BACKGROUND, *CDNET_UNSCORED, CDNET_FOREGROUND], dtype=np.uint8)


@dataclass(frozen=True, kw_only=True)
class Scores:
    """Pixel counts of a mask against CDnet ground truth; add them across frames.

    Attributes
    ----------
    tp, fp, fn, tn : int
        True positives (foreground found), false positives, false negatives (missed
        foreground), true negatives, over the scored pixels only.

    Notes
    -----
    Each rate is NaN when its denominator is 0 (e.g. recall when the truth has no
    foreground pixel), never an arbitrary 0 or 1, so averages do not hide it.
    The F-measure is computed as ``2 TP / (2 TP + FP + FN)``, which equals
    ``2 precision recall / (precision + recall)`` and is 0, not NaN, when nothing
    was found but something was there.  ``Scores()`` is the zero, so
    ``sum(per_frame, Scores())`` accumulates.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Scores) -> Scores:
        if not isinstance(other, Scores):
            return NotImplemented
        return Scores(
            tp=self.tp + other.tp, fp=self.fp + other.fp, fn=self.fn + other.fn, tn=self.tn + other.tn
        )

    @property
    def total(self) -> int:
        """Scored pixels: TP + FP + FN + TN."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def recall(self) -> float:
        """TP / (TP + FN): share of the true foreground found."""
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:
        """TN / (TN + FP): share of the true background kept."""
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def fpr(self) -> float:
        """False positive rate, FP / (FP + TN)."""
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def fnr(self) -> float:
        """False negative rate, FN / (TP + FN)."""
        return _ratio(self.fn, self.tp + self.fn)

    @property
    def pwc(self) -> float:
        """Percentage of wrong classifications, 100 (FN + FP) / (TP + FN + FP + TN)."""
        return 100.0 * _ratio(self.fn + self.fp, self.total)

    @property
    def precision(self) -> float:
        """TP / (TP + FP): share of the marked pixels that are foreground."""
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def f_measure(self) -> float:
        """2 TP / (2 TP + FP + FN), the harmonic mean of precision and recall."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def as_dict(self) -> dict[str, float | int | None]:
        """Counts and every metric, NaN as None (JSON has no NaN)."""
        metrics = {
            "recall": self.recall,
            "specificity": self.specificity,
            "fpr": self.fpr,
            "fnr": self.fnr,
            "pwc": self.pwc,
            "precision": self.precision,
            "f_measure": self.f_measure,
        }
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            **{name: None if math.isnan(value) else value for name, value in metrics.items()},
        }


def cdnet_scores(predicted: npt.ArrayLike, truth: npt.ArrayLike) -> Scores:
    """Count a predicted mask against a CDnet 2014 ground-truth mask.

    Parameters
    ----------
    predicted : array_like
        Shape (y, x) or (frame, y, x); bool, or any numbers with non-zero meaning
        foreground (a 0/255 mask from :func:`pipelines.separate.masks` works).
    truth : array_like
        Same shape, uint8 CDnet values: 0 (static) and 50 (hard shadow) are
        background, 255 foreground, 85 (outside the region of interest) and 170
        (unknown motion) are not scored.

    Returns
    -------
    Scores
        TP, FP, FN, TN over the scored pixels.

    Raises
    ------
    InvalidParameterError
        Shapes differ, or the truth holds a value that is not a CDnet value.
    """
    if isinstance(predicted, da.Array) or isinstance(truth, da.Array):
        raise InvalidParameterError("cdnet_scores needs masks in memory, got a dask array; compute it first")
    found = np.asarray(predicted) != 0
    gt = np.asarray(truth)
    if found.shape != gt.shape:
        raise InvalidParameterError(
            f"predicted mask {found.shape} and truth {gt.shape} must have the same shape;"
            " read the truth at the video's size"
        )
    unknown = ~np.isin(gt, _CDNET_VALUES)
    if unknown.any():
        value = gt[unknown].flat[0]
        raise InvalidParameterError(
            f"truth holds the value {value!r}, which is not a CDnet value (0, 50, 85, 170, 255);"
            " binarise the mask to 0/255 first"
        )
    positive = gt == CDNET_FOREGROUND
    negative = np.isin(gt, CDNET_BACKGROUND)
    return Scores(
        tp=int(np.count_nonzero(found & positive)),
        fp=int(np.count_nonzero(found & negative)),
        fn=int(np.count_nonzero(~found & positive)),
        tn=int(np.count_nonzero(~found & negative)),
    )


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else math.nan
