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

import zarr
import zarr.storage

from storage.errors import (
    NotAVidsvdStoreError,
    StoreExistsError,
    StoreNotFoundError,
    StoreNotWritableError,
    VidsvdError,
)
from storage.layout import FORMAT_ATTR, FORMAT_VERSION
from storage.object_store import delete_url, url_kind, zarr_filesystem

__all__ = [
    "StoreLocation",
    "create_parent_folder",
    "create_store",
    "delete_store",
    "open_store",
    "store_exists",
    "store_problem",
    "stored_bytes_by_array",
]


@dataclass(frozen=True, kw_only=True)
class StoreLocation:
    """Where a store lives: a local folder or any fsspec URL.

    Attributes
    ----------
    url : str
        What the user gave (a path or a URL such as ``s3://bucket/video.zarr``).
    storage_options : dict
        Passed to fsspec for URLs, on top of :data:`storage.object_store.URL_DEFAULTS`.
        Credentials and endpoint are best left to the environment (see
        :mod:`storage.object_store`): options given here travel in task graphs to
        every worker.
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
        fs, root = zarr_filesystem(self.url, self.storage_options)
        return zarr.storage.FsspecStore(fs=fs, path=root, read_only=read_only)

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
    return url_kind(location.url, location.storage_options)


def store_exists(location: StoreLocation | str | os.PathLike[str]) -> bool:
    """Return True when something (ours or not) already exists at the location."""
    return _existing_kind(as_location(location)) not in ("absent", "empty")


def stored_bytes_by_array(location: StoreLocation | str | os.PathLike[str]) -> dict[str, int]:
    """Bytes every array of the store takes (its chunks and metadata), by path, sorted.

    Lists the store's metadata and chunk sizes only (no chunk is read): for object
    storage one listing per array.
    """
    root = open_store(location)
    return {
        path: int(member.nbytes_stored())
        for path, member in sorted(root.members(max_depth=None))
        if isinstance(member, zarr.Array)
    }


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
        # never the consolidated copy of the metadata: it is a snapshot for other
        # readers (xarray), refreshed after each write, while vidsvd reads the truth
        group = zarr.open_group(
            store=loc.zarr_store(read_only=not writable),
            mode="r+" if writable else "r",
            use_consolidated=False,
        )
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


def create_parent_folder(location: StoreLocation | str | os.PathLike[str]) -> None:
    """Create the folder a local store will be created in (nothing for URLs).

    Lets the workers of a cluster check that they see that folder before a long
    ingest creates the store in it.

    Raises
    ------
    StoreNotWritableError
        The folder cannot be created.
    """
    loc = as_location(location)
    if not loc.is_local:
        return
    try:
        loc.local_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreNotWritableError(
            f"cannot create the folder of the store {loc} ({exc.strerror or exc}); choose a writable --store"
        ) from None


def delete_store(location: StoreLocation | str | os.PathLike[str]) -> None:
    """Delete a vidsvd store and everything in it; refuse anything that is not ours."""
    loc = as_location(location)
    open_store(loc)  # raises unless the location holds one of our stores
    if loc.is_local:
        shutil.rmtree(loc.local_path)
    else:
        delete_url(loc.url, loc.storage_options)


def store_problem(location: StoreLocation | str | os.PathLike[str], *, must_exist: bool = True) -> str | None:
    """Why this process cannot use the store, or None when it can.

    Meant to run on every dask worker (``Client.run``), whose view of the store
    may differ from this process's: another machine without the shared filesystem,
    or without the object-storage credentials.

    Parameters
    ----------
    location : StoreLocation, path or URL
        The store, as the client resolved it (local paths absolute).
    must_exist : bool
        True: the store must be there and be a vidsvd store.  False (before an
        ingest creates it): a local store's parent folder must exist, a URL's
        bucket must be reachable with this process's credentials.

    Returns
    -------
    str or None
        A short reason ("it does not exist there", "no credentials for ..."), or None.
    """
    loc = as_location(location)
    try:
        if not must_exist:
            if loc.is_local:
                parent = loc.local_path.parent
                return None if parent.is_dir() else f"its folder {parent} does not exist there"
            _existing_kind(loc)
            return None
        open_store(loc)
    except StoreNotFoundError as exc:
        return "it does not exist there" if loc.is_local else str(exc)
    except NotAVidsvdStoreError:
        return "it is not a vidsvd store there"
    except VidsvdError as exc:
        return str(exc)
    except OSError as exc:
        return f"it cannot be read there ({exc.strerror or exc})"
    return None
