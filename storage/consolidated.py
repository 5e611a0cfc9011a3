"""Consolidated metadata: one read for readers such as ``xarray.open_zarr``.

A store's arrays and groups each have their own ``zarr.json``; consolidating copies
them all into the root's, so ``xarray.open_zarr(STORE)`` opens every array at once,
without the warning it gives for a store that has none.  That copy is a snapshot, so
it must never describe a store being changed: every writing step drops it when it
takes the store's writer lock (:func:`storage.writer_lock.writer_lock`) and writes it
again when it ends, also on an error (a snapshot of what is there then, incomplete
arrays saying so).  A killed step leaves a store without consolidated metadata
(readers then fall back to the arrays' own metadata, which is the truth); vidsvd
itself never reads the consolidated copy.

Zarr v3 has no consolidated metadata in its specification yet: zarr-python and xarray
agree on it, other implementations may ignore it, which is harmless.
"""

from __future__ import annotations

import os
import warnings

import zarr

from storage.errors import NotAVidsvdStoreError, StoreNotFoundError
from storage.store import StoreLocation, as_location, open_store

__all__ = ["consolidate", "drop_consolidated"]


def drop_consolidated(location: StoreLocation | str | os.PathLike[str]) -> None:
    """Remove the consolidated metadata from the store's root, if it has any.

    Rewrites the root's ``zarr.json`` from its own metadata (one small write); a
    missing store or one that is not a vidsvd store is left alone.
    """
    loc = as_location(location)
    try:
        root = open_store(loc, writable=True)
    except (StoreNotFoundError, NotAVidsvdStoreError):
        return  # none yet, or not ours: the step refuses it in its own words
    if _has_consolidated(loc):
        root.update_attributes({})  # written from metadata read without the consolidated copy


def consolidate(location: StoreLocation | str | os.PathLike[str]) -> None:
    """Write the store's consolidated metadata (every node's ``zarr.json`` into the root's).

    Reads the metadata of every group and array, no chunk: O(arrays) small reads.
    """
    loc = as_location(location)
    try:
        open_store(loc)
    except (StoreNotFoundError, NotAVidsvdStoreError):
        return
    with warnings.catch_warnings():
        # "Consolidated metadata is currently not part in the Zarr format 3 specification"
        warnings.simplefilter("ignore", category=UserWarning)
        zarr.consolidate_metadata(loc.zarr_store(read_only=False))


def _has_consolidated(loc: StoreLocation) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        group = zarr.open_group(store=loc.zarr_store(read_only=True), mode="r", use_consolidated=None)
    return group.metadata.consolidated_metadata is not None
