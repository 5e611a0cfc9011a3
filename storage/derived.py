"""Arrays derived from the video and its factors: ``STORE/foreground`` and ``STORE/masks``.

Both have the video's shape (frame, y, x) and its frame chunking, so every task of
the separation writes whole Zarr chunks, and both carry ``complete: true`` only after
every chunk is written.  Files meant for people (PNG images, reports) go to an output
folder through :func:`write_file_atomic`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import zarr

from storage.errors import (
    InvalidParameterError,
    StoreIncompleteError,
    StoreNotFoundError,
    StoreNotWritableError,
)
from storage.integrity import WRITE_CONFIG, checked_dask_array, compressor, require_all_chunks
from storage.layout import (
    COMPLETE_ATTR,
    COORDINATES_ATTR,
    FOREGROUND_ARRAY,
    MASKS_ARRAY,
    TIME_ARRAY,
    VIDEO_DIMS,
)
from storage.store import StoreLocation, as_location, open_store

__all__ = [
    "DERIVED_ARRAYS",
    "DerivedWrite",
    "SeparationRecord",
    "StoredArray",
    "open_derived",
    "prepare_derived",
    "read_separation",
    "remove_derived",
    "write_file_atomic",
]

DERIVED_ARRAYS = (FOREGROUND_ARRAY, MASKS_ARRAY)


@dataclass(frozen=True, kw_only=True)
class SeparationRecord:
    """What produced ``STORE/foreground`` and ``STORE/masks``.

    Attributes
    ----------
    factors : str
        Name of the factor set of the background.
    rank : int
        Components of the background.
    threshold : float
        Mask threshold on |foreground|, grey levels.
    video_fingerprint : str
        Fingerprint of the video separated.
    cleanup : str
        The mask clean-up applied (e.g. ``"median 3x3"``).
    factors_id : str
        Identity of the factor set's write (:attr:`storage.factors.StoredFactors.factors_id`):
        factors replaced under the same name have another.
    threshold_rule : str
        How the threshold was chosen (the auto rule's name, or ``"given"``); empty in
        stores written before it was recorded.
    pixel_noise_factor : float
        Each pixel's threshold was raised to this many of its own noise sigmas
        (measured on pairs of consecutive frames); 0: one threshold for every pixel
        (a given threshold, or stores written before it was recorded).
    shadows : bool
        Cast shadows were to be taken out of the masks (``separate``'s default; False after
        ``--no-shadows``, and in stores written before the setting was recorded).
    shadow_ratio : float
        The scene's shadow ratio whose pixels left the masks; 0: none (not asked for,
        or the sample showed no shadow ratio).
    shadow_rule : str
        The rule that took them out, in words, when they were asked to be; empty
        otherwise, and in stores written before it was recorded.
    complete : bool
        True once every chunk of both arrays is written (read back only).
    """

    factors: str
    rank: int
    threshold: float
    video_fingerprint: str
    cleanup: str
    factors_id: str = ""
    threshold_rule: str = ""
    pixel_noise_factor: float = 0.0
    shadows: bool = False
    shadow_ratio: float = 0.0
    shadow_rule: str = ""
    complete: bool = False

    def as_attrs(self) -> dict[str, Any]:
        """The record as the arrays' attributes (without the completeness marker)."""
        return {
            "factors": self.factors,
            "rank": self.rank,
            "threshold": self.threshold,
            "video_fingerprint": self.video_fingerprint,
            "cleanup": self.cleanup,
            "factors_id": self.factors_id,
            "threshold_rule": self.threshold_rule,
            "pixel_noise_factor": self.pixel_noise_factor,
            "shadows": self.shadows,
            "shadow_ratio": self.shadow_ratio,
            "shadow_rule": self.shadow_rule,
        }

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> SeparationRecord:
        """The record of a derived array's attributes."""
        return cls(
            factors=str(attrs.get("factors", "")),
            rank=int(attrs.get("rank", 0)),
            threshold=float(attrs.get("threshold", 0.0)),
            video_fingerprint=str(attrs.get("video_fingerprint", "")),
            cleanup=str(attrs.get("cleanup", "")),
            factors_id=str(attrs.get("factors_id", "")),
            threshold_rule=str(attrs.get("threshold_rule", "")),
            pixel_noise_factor=float(attrs.get("pixel_noise_factor", 0.0)),
            shadows=bool(attrs.get("shadows", False)),
            shadow_ratio=float(attrs.get("shadow_ratio", 0.0)),
            shadow_rule=str(attrs.get("shadow_rule", "")),
            complete=bool(attrs.get(COMPLETE_ATTR, False)),
        )


@dataclass(frozen=True, kw_only=True)
class StoredArray:
    """A complete derived array.

    Attributes
    ----------
    data : dask.array.Array
        (frame, y, x), lazy, one dask chunk per Zarr chunk.
    record : SeparationRecord
        What produced it.
    """

    data: da.Array
    record: SeparationRecord


@dataclass(frozen=True, kw_only=True)
class DerivedWrite:
    """Derived arrays created in the store, waiting to be computed and marked complete.

    Attributes
    ----------
    task : dask.delayed.Delayed
        Computes every array chunk by chunk straight into its Zarr array and returns
        the number of chunks written; run it with any scheduler (a distributed
        Client's ``compute`` shows progress).
    targets : list of zarr.Array
        The arrays being written.
    """

    task: Any
    targets: list[zarr.Array]

    def finish(self) -> None:
        """Mark every array complete; call only after ``task`` succeeded."""
        for target in self.targets:
            target.update_attributes({COMPLETE_ATTR: True})


def prepare_derived(
    store: StoreLocation | str | os.PathLike[str],
    *,
    arrays: Mapping[str, da.Array],
    record: SeparationRecord,
) -> DerivedWrite:
    """Create ``STORE/<name>`` for each array (``complete: false``) and the task that fills them.

    Parameters
    ----------
    store : path or URL
        The store (every worker must reach it).
    arrays : mapping of {"foreground", "masks"} to dask.array.Array
        Shapes (frame, y, x); their frame chunks become the Zarr chunks (whole frames).
        Storing them in one task graph computes what they share (the background) once.
    record : SeparationRecord
        Provenance, written on every array.

    Notes
    -----
    Nothing is held whole: each task computes and writes one chunk of frames.  An
    existing array of the same name is replaced and stays ``complete: false`` until
    :meth:`DerivedWrite.finish`.
    """
    unknown = sorted(set(arrays) - set(DERIVED_ARRAYS))
    if unknown:
        raise InvalidParameterError(
            f"derived arrays are {', '.join(DERIVED_ARRAYS)}; got {', '.join(unknown)}"
        )
    root = open_store(as_location(store), writable=True)
    frame_times = {COORDINATES_ATTR: TIME_ARRAY} if TIME_ARRAY in root else {}
    sources, targets = [], []
    for name, data in arrays.items():
        whole_frames = data.rechunk({0: data.chunks[0], 1: -1, 2: -1})
        target = root.create_array(
            name=name,
            shape=whole_frames.shape,
            chunks=(max(whole_frames.chunks[0]), *whole_frames.shape[1:]),
            dtype=whole_frames.dtype,
            compressors=compressor(),
            fill_value=0,
            dimension_names=VIDEO_DIMS,
            attributes={**record.as_attrs(), **frame_times, COMPLETE_ATTR: False},
            overwrite=True,
        ).with_config(WRITE_CONFIG)
        # Zarr chunks are uniform: regroup the dask chunks onto the Zarr grid.
        sources.append(whole_frames.rechunk({0: target.chunks[0]}))
        targets.append(target)
    stores = da.store(sources, targets, lock=False, compute=False)
    if isinstance(stores, da.Array):  # one source: dask returns its array, not a tuple
        stores = (stores,)
    # One Delayed that depends on every chunk's write and returns the number of chunks
    # written: computing it moves nothing but that count to the client.
    chunk_writes = [block for stored in stores for block in stored.to_delayed().ravel()]
    task = dask.delayed(len, pure=True)(chunk_writes)
    return DerivedWrite(task=task, targets=targets)


def open_derived(store: StoreLocation | str | os.PathLike[str], name: str) -> StoredArray:
    """Open a complete derived array lazily.

    Raises
    ------
    StoreNotFoundError
        The array does not exist (run ``vidsvd separate`` first).
    StoreIncompleteError
        Its write was interrupted.
    """
    loc = as_location(store)
    root = open_store(loc)
    if name not in root:
        raise StoreNotFoundError(f"{loc} has no {name}; run `vidsvd separate --store {loc}` first")
    array = root[name]
    assert isinstance(array, zarr.Array)
    attrs = dict(array.attrs)
    if not attrs.get(COMPLETE_ATTR):
        raise StoreIncompleteError(
            f"{name} in {loc} is incomplete (interrupted); rerun `vidsvd separate --store {loc}`"
        )
    what = f"{name} in {loc}"
    fix = f"rerun `vidsvd separate --store {loc}`"
    require_all_chunks(array, what=what, fix=fix)
    return StoredArray(
        data=checked_dask_array(array, what=what, fix=fix), record=SeparationRecord.from_attrs(attrs)
    )


def remove_derived(store: StoreLocation | str | os.PathLike[str], name: str) -> bool:
    """Delete the derived array ``name`` if the store has one; return whether it did.

    A separation that does not store the foreground removes an earlier one's, so the
    store never holds a foreground of another separation than its masks.
    """
    if name not in DERIVED_ARRAYS:
        raise InvalidParameterError(f"derived arrays are {', '.join(DERIVED_ARRAYS)}; got {name}")
    root = open_store(as_location(store), writable=True)
    if name not in root:
        return False
    del root[name]
    return True


def read_separation(store: StoreLocation | str | os.PathLike[str]) -> SeparationRecord | None:
    """What produced the store's masks (complete or not), or None when it has none."""
    root = open_store(as_location(store))
    if MASKS_ARRAY not in root:
        return None
    return SeparationRecord.from_attrs(dict(root[MASKS_ARRAY].attrs))


def write_file_atomic(path: str | os.PathLike[str], content: bytes | str) -> Path:
    """Write a file through a temporary name and rename it, so it is never half-written.

    Parameters
    ----------
    path : path
        Target file; its folder is created when missing.
    content : bytes or str
        Bytes, or text written as UTF-8.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode("utf-8") if isinstance(content, str) else content
        with tempfile.NamedTemporaryFile(
            dir=target.parent, prefix=f".{target.name}.", delete=False
        ) as handle:
            handle.write(data)
            temporary = Path(handle.name)
        umask = os.umask(0)
        os.umask(umask)
        temporary.chmod(0o666 & ~umask)  # NamedTemporaryFile makes 0600 files
        temporary.replace(target)
    except OSError as exc:
        raise StoreNotWritableError(
            f"cannot write {target} ({exc}); choose a writable --out folder"
        ) from None
    return target
