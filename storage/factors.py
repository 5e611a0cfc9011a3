"""Persist and reopen truncated-SVD factors: ``STORE/factors/<name>/{U, s, Vt}``.

::

    factors/<name>/      group; attrs: method, rank, power_iters, oversample, seed,
                         video_fingerprint, wall_time_s, versions, ... and
                         complete: true, written last
      U                  (pixel, component) float32
      s                  (component,) float32
      Vt                 (component, frame) float32

Each factor set is written by whatever dask scheduler is current (a distributed
Client's workers write their chunks straight into the store, which must therefore be
a path or URL every worker can reach).  The group is created with ``complete: false``
and marked complete only after all three arrays are stored, so an interrupted or
failed write is never mistaken for usable factors; the next write of the same name
replaces it.
"""

from __future__ import annotations

import math
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import dask.array as da
import numpy as np
import numpy.typing as npt
import zarr

from storage.errors import (
    FingerprintMismatchError,
    InvalidParameterError,
    StoreExistsError,
    StoreIncompleteError,
    StoreNotFoundError,
)
from storage.factor_lookup import recorded_windows
from storage.integrity import WRITE_CONFIG, checked_dask_array, compressor, require_all_chunks
from storage.layout import (
    COMPLETE_ATTR,
    FACTOR_S,
    FACTOR_U,
    FACTOR_VT,
    FACTORS_CHUNK_BYTES,
    FACTORS_GROUP,
    FRAME_SHIFTS_ATTR,
    GRAM_EIGENVALUES_ATTR,
    GRAM_TRACE_ATTR,
    S_DIMS,
    U_DIMS,
    VT_DIMS,
    default_factors_name,
)
from storage.provenance import library_versions
from storage.store import StoreLocation, as_location, open_store

__all__ = [
    "FactorParameters",
    "StoredFactors",
    "check_factors_name",
    "default_factors_name",
    "factors_chunks",
    "open_factors",
    "write_factors",
]

_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_REQUIRED_ATTRS = ("method", "video_fingerprint")
_FLOAT32_BYTES = 4


class FactorParameters(Protocol):
    """What identifies a decomposition (``pipelines.decompose.SvdParameters`` fits)."""

    @property
    def method(self) -> str:
        """``"auto"``, ``"randomized"`` or ``"exact"``."""

    @property
    def rank(self) -> int:
        """Number of components."""

    @property
    def power_iters(self) -> int:
        """Power iterations (randomized only)."""

    @property
    def oversample(self) -> int:
        """Oversampling (randomized only)."""

    @property
    def seed(self) -> int:
        """Seed of the random sketch (randomized only)."""


@dataclass(frozen=True, kw_only=True)
class StoredFactors:
    """A complete factor set, opened lazily.

    Attributes
    ----------
    name : str
        Its name under ``STORE/factors``.
    U : dask.array.Array
        Shape (pixel, component) = (P, k), float32; lazy.
    s : dask.array.Array
        Shape (component,) = (k,), float32; lazy.
    Vt : dask.array.Array
        Shape (component, frame) = (k, T), float32; lazy.
    attrs : dict
        Provenance: method, rank, power_iters, oversample, seed, video_fingerprint,
        wall_time_s, versions, ...
    location : StoreLocation
        The store.
    """

    name: str
    U: da.Array
    s: da.Array
    Vt: da.Array
    attrs: dict[str, Any]
    location: StoreLocation

    @property
    def rank(self) -> int:
        """Number of components k."""
        return int(self.s.shape[0])

    @property
    def method(self) -> str:
        """``"randomized"`` or ``"exact"``."""
        return str(self.attrs.get("method", ""))

    @property
    def video_fingerprint(self) -> str:
        """Fingerprint of the video the factors were computed from."""
        return str(self.attrs.get("video_fingerprint", ""))

    @property
    def factors_id(self) -> str:
        """Identity of this write of the factors ("" for factors written before it existed)."""
        return str(self.attrs.get("factors_id", ""))

    @property
    def windows(self) -> list[tuple[int, int]] | None:
        """The frame ranges [start, stop) of a fitted background's plates, when recorded."""
        return recorded_windows(self.attrs)

    @property
    def passes(self) -> int | None:
        """Reads of the video the computation made, when recorded."""
        passes = self.attrs.get("passes")
        return None if passes is None else int(passes)

    @property
    def wall_time_s(self) -> float | None:
        """Seconds the decomposition took, when recorded."""
        seconds = self.attrs.get("wall_time_s")
        return None if seconds is None else float(seconds)

    @property
    def recorded_energies(self) -> tuple[float, list[float]] | None:
        """``||M||_F^2`` and the first ``rank`` values s_i^2 (float64), where recorded.

        Factors of the Gram method record them (:data:`GRAM_TRACE_ATTR`,
        :data:`GRAM_EIGENVALUES_ATTR`): their differences are the exact truncated SVD's
        squared errors.  None for other factors, or values that are not finite numbers
        for every rank.
        """
        trace = self.attrs.get(GRAM_TRACE_ATTR)
        eigenvalues = self.attrs.get(GRAM_EIGENVALUES_ATTR)
        if not isinstance(trace, (int, float)) or not isinstance(eigenvalues, list):
            return None
        values = [float(value) for value in eigenvalues if isinstance(value, (int, float))]
        if len(values) != len(eigenvalues) or len(values) < self.rank:
            return None
        if not all(math.isfinite(value) for value in [float(trace), *values]):
            return None
        return float(trace), values[: self.rank]

    @property
    def frame_shifts(self) -> npt.NDArray[np.int64] | None:
        """Each frame's whole-pixel shift (T, 2), (dy, dx), where the fit registered the frames.

        A fitted background records them (:data:`FRAME_SHIFTS_ATTR`) when the camera
        moved (:mod:`pipelines.registration`); None otherwise.

        Raises
        ------
        StoreIncompleteError
            Recorded shifts that are not one pair of integers per frame of Vt.
        """
        recorded = self.attrs.get(FRAME_SHIFTS_ATTR)
        if recorded is None:
            return None
        table = np.asarray(recorded)
        n_frames = int(self.Vt.shape[1])
        if table.shape != (n_frames, 2) or not np.issubdtype(table.dtype, np.integer):
            raise StoreIncompleteError(
                f"factors {self.name!r} in {self.location} record frame shifts of shape {table.shape},"
                f" not ({n_frames}, 2) integers (damaged); remove {self.location}/{FACTORS_GROUP}/{self.name}"
                f" and fit them again (`vidsvd separate --store {self.location}`)"
            )
        return table.astype(np.int64)

    @property
    def versions(self) -> dict[str, str]:
        """Versions of the libraries that computed the factors."""
        return {str(k): str(v) for k, v in self.attrs.get("versions", {}).items()}

    @property
    def provenance(self) -> dict[str, Any]:
        """What the factors were computed with and from (a JSON-ready copy, without versions)."""
        hidden = ("versions", COMPLETE_ATTR, FRAME_SHIFTS_ATTR)  # the shifts: a number per frame
        return {key: value for key, value in self.attrs.items() if key not in hidden}


def factors_chunks(
    n_pixels: int, n_frames: int, rank: int, *, chunk_bytes: int = FACTORS_CHUNK_BYTES
) -> dict[str, tuple[int, ...]]:
    """Zarr chunk shapes of U, s and Vt: about ``chunk_bytes`` each, all components.

    Returns
    -------
    dict
        ``{"U": (rows, k), "s": (k,), "Vt": (k, columns)}``.
    """
    k = max(1, rank)
    per_chunk = max(1, chunk_bytes // (_FLOAT32_BYTES * k))
    return {
        FACTOR_U: (max(1, min(per_chunk, n_pixels)), k),
        FACTOR_S: (k,),
        FACTOR_VT: (k, max(1, min(per_chunk, n_frames))),
    }


def write_factors(
    store: StoreLocation | str | os.PathLike[str],
    *,
    name: str,
    U: da.Array | np.ndarray[Any, Any],  # noqa: N803 - the vocabulary's names
    s: da.Array | np.ndarray[Any, Any],
    Vt: da.Array | np.ndarray[Any, Any],  # noqa: N803
    attrs: Mapping[str, Any],
    overwrite: bool = False,
) -> None:
    """Store U, s, Vt as ``STORE/factors/<name>``, then mark the group complete.

    Parameters
    ----------
    store : path or URL
        An existing vidsvd store (every worker must reach it).
    name : str
        Name of the factor set: letters, digits, ``.``, ``_`` and ``-``.
    U, s, Vt : dask.array.Array or numpy.ndarray
        Shapes (P, k), (k,), (k, T), stored as float32.  Lazy arrays are computed now,
        by the current scheduler, chunk by chunk straight into the store; arrays in
        memory are written from this process (a graph would carry their values to the
        scheduler: 22 MB for six plates of 720p, which distributed warns of).
    attrs : mapping
        Provenance written on the group (JSON values); needs ``method`` and
        ``video_fingerprint``, and usually has rank, power_iters, oversample, seed,
        wall_time_s, peak_worker_memory and versions.  ``rank``, ``n_pixels``,
        ``n_frames`` and ``versions`` (of numpy, zarr, dask, ...) are filled in when
        absent.
    overwrite : bool
        Replace complete factors of the same name.  Incomplete ones (an interrupted
        write) are always replaced.

    Raises
    ------
    InvalidParameterError
        Bad name, shapes that do not fit together, or a required attribute missing.
    StoreExistsError
        Complete factors of that name exist and ``overwrite`` is False.
    StoreNotFoundError, NotAVidsvdStoreError
        No vidsvd store at ``store``.

    Notes
    -----
    The arrays are rechunked to the Zarr chunks (:func:`factors_chunks`, about 32 MiB,
    every component in one chunk) before they are stored, so every task writes whole
    chunks and no two tasks share one.  When the write fails or is interrupted
    (KeyboardInterrupt included) the group keeps ``complete: false``.  Under a
    distributed Client an interrupt stops the wait, not tasks already running on
    workers; they may still write chunks into the incomplete group.

    Memory: one chunk of each factor per task, on top of what computing them takes.
    """
    _check_name(name)
    u, sv, vt = (_float32(a) for a in (U, s, Vt))
    if u.ndim != 2 or sv.ndim != 1 or vt.ndim != 2:
        raise InvalidParameterError(
            f"factors must be U (P, k), s (k,), Vt (k, T); got shapes {u.shape}, {sv.shape}, {vt.shape}"
        )
    n_pixels, rank = (int(n) for n in u.shape)
    n_frames = int(vt.shape[1])
    if sv.shape != (rank,) or vt.shape[0] != rank:
        raise InvalidParameterError(
            f"factors must share their number of components: U {u.shape}, s {sv.shape}, Vt {vt.shape}"
        )
    record = _jsonable(dict(attrs))
    missing = [key for key in _REQUIRED_ATTRS if key not in record]
    if missing:
        raise InvalidParameterError(f"factor attributes need {', '.join(missing)}; pass them in attrs")
    recorded_rank = record.setdefault("rank", rank)
    if recorded_rank != rank:
        raise InvalidParameterError(
            f"attrs say rank {recorded_rank} but the factors have {rank} components; "
            "truncate the factors or fix attrs['rank']"
        )
    record.setdefault("n_pixels", n_pixels)
    record.setdefault("n_frames", n_frames)
    record.setdefault("versions", library_versions())
    # A fresh identity for every write: outputs derived from these factors record it,
    # so factors replaced under the same name never pass for the old ones.
    record["factors_id"] = uuid.uuid4().hex

    loc = as_location(store)
    check_factors_name(loc, name, overwrite=overwrite)
    root = open_store(loc, writable=True)
    parent = root.require_group(FACTORS_GROUP)
    group = parent.create_group(name, overwrite=True, attributes={**record, COMPLETE_ATTR: False})
    chunks = factors_chunks(n_pixels, n_frames, rank)
    sources = {FACTOR_U: u, FACTOR_S: sv, FACTOR_VT: vt}
    dims = {FACTOR_U: U_DIMS, FACTOR_S: S_DIMS, FACTOR_VT: VT_DIMS}
    targets = [
        group.create_array(
            name=key,
            shape=source.shape,
            chunks=chunks[key],
            dtype="float32",
            compressors=compressor(),
            fill_value=np.nan,
            dimension_names=dims[key],
        ).with_config(WRITE_CONFIG)
        for key, source in sources.items()
    ]
    lazy, lazy_targets = [], []
    for (key, source), target in zip(sources.items(), targets, strict=True):
        if isinstance(source, da.Array):
            lazy.append(source.rechunk(chunks[key]))
            lazy_targets.append(target)
        else:  # in memory already: written from here, so that no graph carries the values
            target[...] = source
    if lazy:
        da.store(lazy, lazy_targets, lock=False, compute=True)
    group.update_attributes({COMPLETE_ATTR: True})


def _float32(factor: da.Array | npt.ArrayLike) -> da.Array | npt.NDArray[np.float32]:
    """A factor as float32: a dask array stays lazy, anything else becomes a numpy array."""
    if isinstance(factor, da.Array):
        return factor.astype(np.float32, copy=False)
    return np.asarray(factor, dtype=np.float32)


def check_factors_name(
    store: StoreLocation | str | os.PathLike[str], name: str, *, overwrite: bool = False
) -> None:
    """Refuse, before anything is computed, a name that :func:`write_factors` would refuse.

    Raises
    ------
    InvalidParameterError
        The name is not 1 to 128 letters, digits, ``.``, ``_`` or ``-``.
    StoreExistsError
        Complete factors of that name exist and ``overwrite`` is False.
    StoreNotFoundError, NotAVidsvdStoreError
        No vidsvd store at ``store``.
    """
    _check_name(name)
    loc = as_location(store)
    parent = open_store(loc).get(FACTORS_GROUP)
    existing = parent.get(name) if isinstance(parent, zarr.Group) else None
    if existing is not None and _is_complete(existing) and not overwrite:
        raise StoreExistsError(
            f"factors {name!r} already exist in {loc}; pass --force to recompute them or --name to keep both"
        )


def open_factors(
    store: StoreLocation | str | os.PathLike[str],
    name: str,
    *,
    expected_fingerprint: str | None = None,
) -> StoredFactors:
    """Open complete factors as lazy dask arrays.

    Parameters
    ----------
    store : path or URL
        The store.
    name : str
        Name of the factor set.
    expected_fingerprint : str, optional
        Fingerprint of the store's current video; factors of another video are
        refused.

    Raises
    ------
    StoreNotFoundError
        No such factors (the message lists those that exist).
    StoreIncompleteError
        Their write was interrupted or failed.
    FingerprintMismatchError
        They were computed from another video than ``expected_fingerprint``.
    """
    _check_name(name)
    loc = as_location(store)
    root = open_store(loc)
    parent = root.get(FACTORS_GROUP)
    group = parent.get(name) if isinstance(parent, zarr.Group) else None
    if not isinstance(group, zarr.Group):
        names = _names(parent) if isinstance(parent, zarr.Group) else []
        available = f"; available: {', '.join(names)}" if names else ""
        raise StoreNotFoundError(
            f"no factors {name!r} in {loc}{available}; run `vidsvd decompose --store {loc}`"
        )
    attrs = dict(group.attrs)
    if not attrs.get(COMPLETE_ATTR) or any(key not in group for key in (FACTOR_U, FACTOR_S, FACTOR_VT)):
        raise StoreIncompleteError(
            f"factors {name!r} in {loc} are incomplete (their computation was interrupted or "
            f"failed); rerun `vidsvd decompose --store {loc} --name {name}`"
        )
    recorded = str(attrs.get("video_fingerprint", ""))
    if expected_fingerprint is not None and recorded != expected_fingerprint:
        raise FingerprintMismatchError(
            f"factors {name!r} in {loc} belong to another video (fingerprint {recorded[:12] or '?'}, "
            f"store's video {expected_fingerprint[:12]}); recompute them with "
            f"`vidsvd decompose --store {loc} --name {name} --force`"
        )
    arrays = {key: group[key] for key in (FACTOR_U, FACTOR_S, FACTOR_VT)}
    fix = f"recompute them with `vidsvd decompose --store {loc} --name {name} --force`"
    lazy = {}
    for key, array in arrays.items():
        what = f"{key} of factors {name!r} in {loc}"
        require_all_chunks(array, what=what, fix=fix)
        lazy[key] = checked_dask_array(array, what=what, fix=fix)
    return StoredFactors(
        name=name,
        U=lazy[FACTOR_U],
        s=lazy[FACTOR_S],
        Vt=lazy[FACTOR_VT],
        attrs=attrs,
        location=loc,
    )


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        raise InvalidParameterError(
            f"--name must be 1 to 128 letters, digits, '.', '_' or '-' starting with a "
            f"letter or digit, got {name!r}"
        )


def _is_complete(node: zarr.Group | zarr.Array) -> bool:
    return isinstance(node, zarr.Group) and bool(node.attrs.get(COMPLETE_ATTR))


def _names(parent: zarr.Group) -> list[str]:
    return sorted(str(key) for key in parent.group_keys())


def _jsonable(value: Any) -> Any:
    """Turn numpy scalars and arrays, tuples and non-finite floats into JSON values."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
