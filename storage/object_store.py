"""Stores at fsspec URLs (``s3://bucket/path.zarr`` and the like): filesystem, probe, errors.

Credentials and endpoint come the way the backend reads them; vidsvd passes none.
For ``s3://`` (s3fs, the ``s3`` extra) that is ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY`` (or ``AWS_PROFILE`` and ``~/.aws``), the endpoint of an
S3-compatible server from ``AWS_ENDPOINT_URL`` or fsspec's ``FSSPEC_S3_ENDPOINT_URL``.
Every process that opens the store resolves them itself, dask workers included: a
task graph carries the URL and the (non-secret) options, never a key.

Before a store at a URL is read or created, :func:`url_kind` probes it once and
turns what the backend raises into one of vidsvd's errors, each naming what to fix:
a backend that is not installed, no credentials, credentials refused, an endpoint
that does not answer, a bucket that does not exist.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import fsspec
from fsspec.asyn import AsyncFileSystem
from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper
from fsspec.spec import AbstractFileSystem

from storage.errors import (
    BucketNotFoundError,
    InvalidParameterError,
    StoreAccessError,
    StoreBackendMissingError,
    StoreUnreachableError,
)

__all__ = ["URL_DEFAULTS", "delete_url", "url_filesystem", "url_kind", "url_options", "zarr_filesystem"]

URL_DEFAULTS: Mapping[str, Any] = {"use_listings_cache": False}
"""Options every URL store gets unless the caller overrides them.  Without listings
cache: zarr writes through its own (asynchronous) filesystem instance, so a cached
listing here would go stale and hide a store just created."""

_BUCKET_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "oss"})
"""Protocols whose first path component is a bucket (container) that must exist."""

_S3_PROTOCOLS = frozenset({"s3", "s3a"})

# Exceptions of optional libraries (botocore, aiohttp), matched by class name so
# that this module imports none of them.
_NO_CREDENTIALS = frozenset(
    {"NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError", "NoAuthTokenError"}
)
_UNREACHABLE = frozenset(
    {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ConnectionClosedError",
        "ReadTimeoutError",
        "ClientConnectorError",
        "ServerDisconnectedError",
    }
)


def url_options(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the fsspec options of a URL store: :data:`URL_DEFAULTS` updated by the caller's."""
    return {**URL_DEFAULTS, **(storage_options or {})}


def _protocol(url: str) -> str:
    return url.split("://", 1)[0].lower()


def url_filesystem(
    url: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem of ``url`` and the store's path in it (no request made).

    Raises
    ------
    StoreBackendMissingError
        The protocol's implementation is not installed (s3fs for ``s3://``).
    InvalidParameterError
        fsspec knows no such protocol, or refuses the options.
    """
    try:
        fs, root = fsspec.core.url_to_fs(url, **url_options(storage_options))
    except ImportError as exc:
        protocol = _protocol(url)
        if protocol in _S3_PROTOCOLS:
            raise StoreBackendMissingError(
                f"{url} needs s3fs, which is not installed: pip install -e '.[s3]' (or pip install s3fs)"
            ) from None
        raise StoreBackendMissingError(
            f"{url} needs the fsspec backend of {protocol}://, which is not installed ({_reason(exc)}); "
            "install it here and on every dask worker"
        ) from None
    except ValueError as exc:
        raise InvalidParameterError(
            f"--store {url} is not a usable URL ({_reason(exc)}); give a local path or an fsspec URL "
            "such as s3://bucket/path.zarr"
        ) from None
    return fs, str(root).rstrip("/")


def zarr_filesystem(
    url: str, storage_options: Mapping[str, Any] | None = None
) -> tuple[AsyncFileSystem, str]:
    """The asynchronous filesystem zarr's ``FsspecStore`` needs, and the store's path in it.

    This wraps the *synchronous* instance of the URL's filesystem (its calls run in
    threads) instead of opening a natively asynchronous one as
    ``FsspecStore.from_url`` does: s3fs closes the HTTP sessions of synchronous
    instances when the process ends, but not those of asynchronous ones, which
    every dask worker then reports as "Unclosed client session" on exit
    (zarr-python#2901, s3fs#943).  Pickled into task graphs, the wrapper carries
    the URL's options and each worker builds its own instance from them.
    """
    fs, root = url_filesystem(url, storage_options)
    return AsyncFileSystemWrapper(fs, asynchronous=True), root


def url_kind(url: str, storage_options: Mapping[str, Any] | None = None) -> str:
    """What is at ``url``: ``"absent"``, ``"empty"``, ``"file"``, ``"zarr"`` or ``"other"``.

    This is also the probe that every command runs before it touches a URL store:
    its requests need the backend, credentials that the endpoint accepts, and the
    bucket.

    Raises
    ------
    StoreBackendMissingError, InvalidParameterError
        See :func:`url_filesystem`.
    StoreAccessError
        No credentials were found, or the endpoint refused them.
    StoreUnreachableError
        The endpoint did not answer (after the backend's own retries).
    BucketNotFoundError
        The URL's bucket does not exist.
    """
    fs, root = url_filesystem(url, storage_options)
    with _backend_errors(url, fs):
        try:
            info = fs.info(root)
        except FileNotFoundError:
            _require_bucket(url, fs, root)
            return "absent"
        if info.get("type") != "directory":
            return "file"
        if fs.exists(f"{root}/zarr.json"):
            return "zarr"
        return "other" if fs.ls(root, detail=False) else "empty"


def delete_url(url: str, storage_options: Mapping[str, Any] | None = None) -> None:
    """Delete everything under ``url`` (the caller has checked that it is a vidsvd store)."""
    fs, root = url_filesystem(url, storage_options)
    with _backend_errors(url, fs):
        fs.rm(root, recursive=True)


def _require_bucket(url: str, fs: AbstractFileSystem, root: str) -> None:
    if _protocol(url) not in _BUCKET_PROTOCOLS:
        return
    bucket = root.split("/", 1)[0]
    try:
        fs.info(bucket)
    except FileNotFoundError:
        raise BucketNotFoundError(
            f"bucket {bucket} does not exist at {_endpoint(fs, url)}: create it or fix --store"
        ) from None
    except PermissionError:
        return  # credentials limited to a prefix may not see the bucket itself: let the store decide


@contextlib.contextmanager
def _backend_errors(url: str, fs: AbstractFileSystem) -> Iterator[None]:
    """Turn the backend's credential and connection failures into vidsvd errors."""
    try:
        yield
    except (BucketNotFoundError, StoreAccessError, StoreUnreachableError):
        raise
    except Exception as exc:
        names = {cls.__name__ for cls in type(exc).__mro__}
        endpoint = _endpoint(fs, url)
        if names & _NO_CREDENTIALS:
            raise StoreAccessError(
                f"no credentials for {url} ({_reason(exc)}): {_credentials_hint(url, where='set')}"
            ) from None
        if isinstance(exc, PermissionError):
            raise StoreAccessError(
                f"{endpoint} refused access to {url} ({_reason(exc)}): "
                f"{_credentials_hint(url, where='check')}, and that they may use this bucket"
            ) from None
        if names & _UNREACHABLE or isinstance(exc, ConnectionError | TimeoutError):
            hint = (
                "check AWS_ENDPOINT_URL (or FSSPEC_S3_ENDPOINT_URL) and the network"
                if _protocol(url) in _S3_PROTOCOLS
                else "check the endpoint in your fsspec configuration and the network"
            )
            raise StoreUnreachableError(
                f"cannot reach {endpoint} for {url} ({_reason(exc)}): {hint}"
            ) from None
        raise


def _credentials_hint(url: str, *, where: str) -> str:
    if _protocol(url) in _S3_PROTOCOLS:
        return f"{where} AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE with ~/.aws/credentials)"
    return f"{where} the credentials of {_protocol(url)}:// in your fsspec configuration"


def _endpoint(fs: AbstractFileSystem, url: str) -> str:
    """The server a filesystem talks to, for messages: its endpoint URL when it has one."""
    candidates: list[Any] = [getattr(fs, "endpoint_url", None)]
    client_kwargs = getattr(fs, "client_kwargs", None)
    if isinstance(client_kwargs, Mapping):
        candidates.append(client_kwargs.get("endpoint_url"))
    if _protocol(url) in _S3_PROTOCOLS:
        try:
            client = fs.s3  # s3fs: the botocore client, which resolved AWS_ENDPOINT_URL and the region
        except Exception:
            client = None
        candidates.append(getattr(getattr(client, "meta", None), "endpoint_url", None))
    for candidate in candidates:
        if candidate:
            return str(candidate)
    return f"the {_protocol(url)} endpoint"


def _reason(exc: BaseException) -> str:
    """An exception's message on one short line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
