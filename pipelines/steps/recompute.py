"""Computing a step's result again when its partial sums did not add up.

The SVD's passes and the background's counts add partials into the first of them in
place (:func:`pipelines.chunk_groups.sum_counted_partials`,
:func:`pipelines.chunk_groups.sum_partials`), and each sum carries a count that is
checked before the result is used (:func:`pipelines.chunk_groups.checked_count`, the
background's per-pixel sums).
A count that is off means a partial was lost or added twice: the likely cause is a
task that dask.distributed ran again after a worker failure, on an input an earlier,
cancelled run of the same task had already added into (or was adding into:
:func:`pipelines.chunk_groups.open_count_row`).  The check turns that into
:class:`storage.errors.InconsistentResultError` before anything is written; this
module computes the result once more, from the start (under the same keys, once the
failed attempt's are released), which a rare worker failure does not repeat.
"""

from __future__ import annotations

import gc
import traceback
from collections.abc import Callable
from typing import Final, TypeVar

from storage.errors import InconsistentResultError

__all__ = ["ATTEMPTS", "recomputed_if_inconsistent"]

ATTEMPTS: Final = 2
"""Computations of one result, the first included, before its inconsistency is the error."""

Result = TypeVar("Result")


def recomputed_if_inconsistent(
    compute: Callable[[], Result], *, what: str, say: Callable[[str], None], attempts: int = ATTEMPTS
) -> Result:
    """``compute()``, called again while it raises :class:`InconsistentResultError`, up to ``attempts`` calls.

    Parameters
    ----------
    compute : callable
        Computes and writes the result; writes nothing when it raises (the checks run
        before any write).
    what : str
        What is computed, for the message, e.g. ``"the SVD"``.
    say : callable
        Receives the one-line message of each new attempt.
    attempts : int
        At least 1.

    Raises
    ------
    InconsistentResultError
        The last attempt's, when every attempt raised it.
    """
    for attempt in range(1, max(1, attempts) + 1):
        try:
            return compute()
        except InconsistentResultError as error:
            if attempt >= attempts:
                raise
            # The Client keeps the exception of a failed future, and its traceback holds
            # the failed attempt's frames, whose locals hold its futures: the scheduler
            # would keep their keys (the erred check, the wrong sum) and hand them back
            # to a graph of the same deterministic keys instead of computing it anew.
            traceback.clear_frames(error.__traceback__)
        say(f"the partial sums of {what} did not add up (a worker failure?): computing it again")
        gc.collect()  # the futures the cleared frames held, and their cycles, now
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover
