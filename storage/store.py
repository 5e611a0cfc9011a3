"""Open, create and recognise vidsvd stores: a Zarr v3 group at a path or fsspec URL.

A store is ours when its root group carries the ``vidsvd`` attribute.  Anything else
that already exists at the location (a file, a non-empty folder, a foreign Zarr
group) is refused, never modified.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import zarr
import zarr.storage

from storage.errors import (
    NotAVidsvdStoreError,
    StoreExistsError,
    StoreNotFoundError,
    StoreNotWritableError,
)
from storage.layout import FORMAT_ATTR, FORMAT_VERSION

__all__ = ["StoreLocation", "create_store", "delete_store", "open_store", "store_exists"]


@dataclass(frozen=True, kw_only=True)
class StoreLocation:
    """Where a store lives: a local folder or any fsspec URL.

    Attributes
    ----------
    url : str
        What the user gave (a path or a URL such as ``s3://bucket/video.zarr``).
    storage_options : dict
        Passed to fsspec for URLs (credentials, endpoint).
    """

    url: str
    storage_options: dict[str, Any] | None = None

    @property
    def is_local(self) -> bool:
        """True when the store is a folder on a local (or shared) filesystem."""
        return "://" not in self.url or self.url.startswith("file://")

    @property
    def local_path(self) -> Path:
        """The folder of a local store."""
        return Path(self.url.removeprefix("file://")).expanduser().absolute()

    def zarr_store(self, *, read_only: bool) -> zarr.abc.store.Store:
        """Return the zarr store object for this location."""
        if self.is_local:
            return zarr.storage.LocalStore(self.local_path, read_only=read_only)
        return zarr.storage.FsspecStore.from_url(
            self.url, storage_options=self.storage_options, read_only=read_only
        )

    def __str__(self) -> str:
        return self.url


def as_location(location: StoreLocation | str | os.PathLike[str]) -> StoreLocation:
    """Accept a :class:`StoreLocation`, a path or a URL."""
    if isinstance(location, StoreLocation):
        return location
    return StoreLocation(url=os.fspath(location))


def _existing_kind(location: StoreLocation) -> str:
    """Return ``"absent"``, ``"empty"``, ``"file"``, ``"zarr"`` or ``"other"``."""
    if location.is_local:
        path = location.local_path
        if not path.exists():
            return "absent"
        if not path.is_dir():
            return "file"
        if (path / "zarr.json").is_file():
            return "zarr"
        return "other" if any(path.iterdir()) else "empty"
    fs, root = fsspec.core.url_to_fs(location.url, **(location.storage_options or {}))
    if not fs.exists(root):
        return "absent"
    if fs.isfile(root):
        return "file"
    if fs.exists(f"{root.rstrip('/')}/zarr.json"):
        return "zarr"
    return "other" if fs.ls(root) else "empty"


def store_exists(location: StoreLocation | str | os.PathLike[str]) -> bool:
    """Return True when something (ours or not) already exists at the location."""
    return _existing_kind(as_location(location)) not in ("absent", "empty")


def open_store(location: StoreLocation | str | os.PathLike[str], *, writable: bool = False) -> zarr.Group:
    """Open an existing vidsvd store's root group.

    Raises
    ------
    StoreNotFoundError
        Nothing is at the location.
    NotAVidsvdStoreError
        Something is there, but not a store written by vidsvd.
    """
    loc = as_location(location)
    kind = _existing_kind(loc)
    if kind in ("absent", "empty"):
        raise StoreNotFoundError(f"no store at {loc}; create one with `vidsvd ingest VIDEO --store {loc}`")
    if kind != "zarr":
        raise NotAVidsvdStoreError(f"{loc} exists but is not a vidsvd store; give another --store path")
    try:
        group = zarr.open_group(store=loc.zarr_store(read_only=not writable), mode="r+" if writable else "r")
    except (ValueError, TypeError, KeyError, OSError) as exc:
        raise NotAVidsvdStoreError(
            f"{loc} exists but is not a vidsvd store ({exc}); give another --store path"
        ) from None
    if FORMAT_ATTR not in group.attrs:
        raise NotAVidsvdStoreError(f"{loc} is a Zarr group not written by vidsvd; give another --store path")
    return group


def create_store(location: StoreLocation | str | os.PathLike[str]) -> zarr.Group:
    """Create an empty vidsvd store (the location must be absent or an empty folder).

    Raises
    ------
    StoreExistsError
        Something already exists at the location.
    StoreNotWritableError
        The location cannot be created or written.
    """
    loc = as_location(location)
    kind = _existing_kind(loc)
    if kind not in ("absent", "empty"):
        raise StoreExistsError(f"{loc} already exists; pass --overwrite to replace it")
    try:
        if loc.is_local:
            loc.local_path.mkdir(parents=True, exist_ok=True)
        return zarr.open_group(
            store=loc.zarr_store(read_only=False),
            mode="w-",
            attributes={FORMAT_ATTR: {"format": FORMAT_VERSION}},
        )
    except PermissionError as exc:
        raise StoreNotWritableError(
            f"cannot write the store at {loc} ({exc.strerror or exc}); choose a writable --store"
        ) from None
    except OSError as exc:
        raise StoreNotWritableError(
            f"cannot create the store at {loc} ({exc}); choose a writable --store"
        ) from None


def delete_store(location: StoreLocation | str | os.PathLike[str]) -> None:
    """Delete a vidsvd store and everything in it; refuse anything that is not ours."""
    loc = as_location(location)
    open_store(loc)  # raises unless the location holds one of our stores
    if loc.is_local:
        shutil.rmtree(loc.local_path)
    else:
        fs, root = fsspec.core.url_to_fs(loc.url, **(loc.storage_options or {}))
        fs.rm(root, recursive=True)
