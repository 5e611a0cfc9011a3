"""Which stored factor set a step uses: the one named, or the best one of the current video."""

from __future__ import annotations

import os
from collections.abc import Sequence

import dask
import dask.array as da

from pipelines.background_models import FITTED_MODELS
from storage.errors import StoreDamagedError
from storage.factor_lookup import find_best_factors
from storage.factors import StoredFactors, open_factors
from storage.store import StoreLocation
from storage.video_array import StoredVideo, open_video

__all__ = ["choose_factors", "finite_flags", "refuse_non_finite", "require_finite_factors"]


def choose_factors(
    store: StoreLocation | str | os.PathLike[str] | StoredVideo, name: str | None
) -> StoredFactors:
    """Open the named factors, or the complete SVD of highest rank tied to the current video.

    Without a name, the fitted backgrounds (``median``, ``robust``) are passed over:
    the steps that choose for themselves (report, apply, separate's svd model) want
    an SVD.

    Raises
    ------
    StoreNotFoundError
        No complete factors of the store's video (run decompose first).
    FingerprintMismatchError
        The named factors were computed from another video.
    """
    video = store if isinstance(store, StoredVideo) else open_video(store)
    if name is not None:
        return open_factors(video.location, name, expected_fingerprint=video.fingerprint)
    return find_best_factors(
        video.location, video_fingerprint=video.fingerprint, excluded_methods=FITTED_MODELS
    )


def require_finite_factors(factors: StoredFactors, *, rank: int | None = None) -> None:
    """Refuse factors whose first ``rank`` components (all by default) hold NaN or infinity.

    A factor chunk that is missing from the store reads as NaN (the arrays' fill
    value); results computed from it would be NaN too.  One pass over U_k, s_k and
    Vt_k (P x k and k x T float32), on the current dask scheduler.

    Raises
    ------
    StoreDamagedError
        Naming the factor set and the way out.
    """
    k = factors.rank if rank is None else rank
    flags = finite_flags(factors.U[:, :k], factors.s[:k], factors.Vt[:k])
    refuse_non_finite(factors.name, dask.compute(*flags))


def finite_flags(u: da.Array, s: da.Array, vt: da.Array) -> tuple[da.Array, da.Array, da.Array]:
    """Lazy: whether U, s and Vt each hold finite values only (three 0-d boolean arrays).

    For a step that computes them beside other work and checks them with
    :func:`refuse_non_finite` before it uses any result.
    """
    return da.isfinite(u).all(), da.isfinite(s).all(), da.isfinite(vt).all()


def refuse_non_finite(name: str, flags: Sequence[bool]) -> None:
    """Raise unless every flag of :func:`finite_flags` (U, s, Vt) of factors ``name`` is true.

    Raises
    ------
    StoreDamagedError
        Naming the factor set, the arrays, and the way out.
    """
    damaged = [array for array, ok in zip(("U", "s", "Vt"), flags, strict=True) if not ok]
    if damaged:
        raise StoreDamagedError(
            f"factors {name!r} hold NaN or infinite values in {', '.join(damaged)} (a chunk is "
            f"missing or damaged); recompute them with `vidsvd decompose --force --name {name}`"
        )
