"""Which factor sets a store holds, and which of them answer a request without computing.

Reads only the groups' attributes (no array is opened until a set is chosen): one
small request per factor set, also on object storage.  Importing this module does not
import dask: a command can ask whether it will compute before it pays for dask.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import zarr

from storage.errors import InvalidParameterError, StoreNotFoundError
from storage.layout import COMPLETE_ATTR, FACTORS_GROUP, RANDOMIZED_OPTIONS
from storage.store import StoreLocation, as_location, open_store

if TYPE_CHECKING:
    from storage.factors import FactorParameters, StoredFactors

__all__ = [
    "FactorsSummary",
    "answering_factors",
    "complete_factors",
    "find_best_factors",
    "find_reusable_factors",
    "list_factors",
    "recorded_windows",
]


@dataclass(frozen=True, kw_only=True)
class FactorsSummary:
    """One entry of ``STORE/factors``, complete or not, without opening its arrays.

    Attributes
    ----------
    name : str
        Its name under ``STORE/factors``.
    complete : bool
        False for an interrupted or failed write (not usable).
    rank : int
        Number of components (0 when unknown).
    attrs : dict
        Every attribute of the group.
    """

    name: str
    complete: bool
    rank: int
    attrs: dict[str, Any]

    @property
    def method(self) -> str:
        """``"randomized"`` or ``"exact"`` ("" when unknown)."""
        return str(self.attrs.get("method", ""))

    @property
    def video_fingerprint(self) -> str:
        """Fingerprint of the video the factors were computed from ("" when unknown)."""
        return str(self.attrs.get("video_fingerprint", ""))

    @property
    def fit(self) -> str:
        """How a fitted background model was fitted, in words ("" when not recorded)."""
        return str(self.attrs.get("fit", ""))

    @property
    def windows(self) -> list[tuple[int, int]] | None:
        """The frame ranges of a fitted background's plates (None when not recorded)."""
        return recorded_windows(self.attrs)

    @property
    def plate_blend(self) -> str:
        """How a fitted background passes from one window's plate to the next ("" when not recorded)."""
        return str(self.attrs.get("plate_blend", ""))

    @property
    def plate_window_s(self) -> float | None:
        """Seconds of video each plate of a fitted background serves (None when not recorded)."""
        value = self.attrs.get("plate_window_s")
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def recorded_windows(attrs: dict[str, Any]) -> list[tuple[int, int]] | None:
    """The frame ranges [start, stop) of a fitted background's plates in factor attributes.

    None when they are not recorded (factors of an SVD, or fitted before windows).
    """
    recorded = attrs.get("windows")
    if not isinstance(recorded, list):
        return None
    return [(int(start), int(stop)) for start, stop in recorded]


def list_factors(store: StoreLocation | str | os.PathLike[str]) -> list[FactorsSummary]:
    """Every factor set of the store, complete or not, sorted by name."""
    root = open_store(as_location(store))
    parent = root.get(FACTORS_GROUP)
    if not isinstance(parent, zarr.Group):
        return []
    summaries = []
    for name in sorted(str(key) for key in parent.group_keys()):
        group = parent[name]
        attrs = dict(group.attrs)
        rank = attrs.get("rank", 0)
        summaries.append(
            FactorsSummary(
                name=name,
                complete=bool(group.attrs.get(COMPLETE_ATTR)),
                rank=int(rank) if isinstance(rank, int) else 0,
                attrs=attrs,
            )
        )
    return summaries


def find_reusable_factors(
    store: StoreLocation | str | os.PathLike[str],
    *,
    video_fingerprint: str,
    parameters: FactorParameters | None = None,
    method: str | None = None,
    rank: int | None = None,
    power_iters: int | None = None,
    oversample: int | None = None,
    seed: int | None = None,
    name: str | None = None,
) -> StoredFactors | None:
    """Find complete factors that answer a request without computing anything.

    Give the request either as ``parameters`` or as ``method``, ``rank`` and (for
    the randomized method) ``power_iters``, ``oversample`` and ``seed``.

    Parameters
    ----------
    store : path or URL
        The store.
    video_fingerprint : str
        Fingerprint of the store's current video; only factors of that video count.
    parameters : FactorParameters, optional
        The request as one object (e.g. ``SvdParameters``).
    method, rank, power_iters, oversample, seed : optional
        The request field by field.
    name : str, optional
        Consider only the factor set of this name.

    Returns
    -------
    StoredFactors or None
        The factors :func:`answering_factors` chooses, opened and checked against
        ``video_fingerprint``.  Their first ``rank`` components answer the request.
        None when there are none.
    """
    from storage.factors import open_factors

    wanted = _request(parameters, method, rank, power_iters, oversample, seed)
    best = _answering(list_factors(store), wanted, video_fingerprint=video_fingerprint, name=name)
    if best is None:
        return None
    return open_factors(store, best.name, expected_fingerprint=video_fingerprint)


def answering_factors(
    store: StoreLocation | str | os.PathLike[str],
    *,
    parameters: FactorParameters,
    video_fingerprint: str | None,
    name: str | None = None,
) -> FactorsSummary | None:
    """The complete factor set that answers ``parameters``, from the attributes alone.

    As :func:`find_reusable_factors`, without opening any array, and of any video when
    ``video_fingerprint`` is None.  Imports no dask, so a command can ask before it
    starts a cluster.
    """
    wanted = _request(parameters, None, None, None, None, None)
    return _answering(list_factors(store), wanted, video_fingerprint=video_fingerprint, name=name)


def _answering(
    summaries: list[FactorsSummary],
    wanted: dict[str, Any],
    *,
    video_fingerprint: str | None,
    name: str | None,
) -> FactorsSummary | None:
    """The set :func:`find_reusable_factors` and :func:`answering_factors` choose.

    Complete, the same method and options (for ``auto``: exact factors, or randomized
    ones of the same options), a rank at least the wanted one and (unless
    ``video_fingerprint`` is None) of that video: the smallest rank, then the first name.
    """
    candidates = []
    for summary in summaries:
        attrs = summary.attrs
        if name is not None and summary.name != name:
            continue
        if not summary.complete:
            continue
        if video_fingerprint is not None and attrs.get("video_fingerprint") != video_fingerprint:
            continue
        method = attrs.get("method")
        if method != wanted["method"] and not (
            wanted["method"] == "auto" and method in ("exact", "randomized")
        ):
            continue  # ``auto`` is answered by exact factors, or randomized ones of the same options
        if summary.rank < wanted["rank"]:
            continue
        if method != "exact" and any(attrs.get(option) != wanted[option] for option in RANDOMIZED_OPTIONS):
            continue
        candidates.append(summary)
    if not candidates:
        return None
    return min(candidates, key=lambda summary: (summary.rank, summary.name))


def _request(
    parameters: FactorParameters | None,
    method: str | None,
    rank: int | None,
    power_iters: int | None,
    oversample: int | None,
    seed: int | None,
) -> dict[str, Any]:
    fields = {
        "method": method,
        "rank": rank,
        "power_iters": power_iters,
        "oversample": oversample,
        "seed": seed,
    }
    if parameters is not None:
        if any(value is not None for value in fields.values()):
            raise InvalidParameterError("give the request either as parameters or field by field, not both")
        return {key: getattr(parameters, key) for key in fields}
    required = ["method", "rank"]
    if method != "exact":
        required += list(RANDOMIZED_OPTIONS)
    missing = [key for key in required if fields[key] is None]
    if missing:
        raise InvalidParameterError(f"find_reusable_factors needs {', '.join(missing)} for method {method!r}")
    return fields


def complete_factors(
    store: StoreLocation | str | os.PathLike[str], *, video_fingerprint: str
) -> list[FactorsSummary]:
    """The complete factor sets computed from the video of ``video_fingerprint``, sorted by name."""
    return [f for f in list_factors(store) if f.complete and f.video_fingerprint == video_fingerprint]


def find_best_factors(
    store: StoreLocation | str | os.PathLike[str],
    *,
    video_fingerprint: str,
    excluded_methods: Collection[str] = (),
) -> StoredFactors:
    """The complete factor set of highest rank computed from the video of ``video_fingerprint``.

    Ties go to the last name in sort order.  Factor sets whose ``method`` is in
    ``excluded_methods`` are passed over (a fitted background is not an SVD).

    Raises
    ------
    StoreNotFoundError
        No complete factors of that video (run decompose first).
    """
    location = as_location(store)
    usable = [
        f
        for f in complete_factors(location, video_fingerprint=video_fingerprint)
        if f.method not in excluded_methods
    ]
    if not usable:
        raise StoreNotFoundError(
            f"{location} has no complete factors of its video; run `vidsvd decompose --store "
            f"{location} --rank K` first"
        )
    from storage.factors import open_factors

    best = max(usable, key=lambda f: (f.rank, f.name))
    return open_factors(location, best.name, expected_fingerprint=video_fingerprint)
