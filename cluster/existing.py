"""An existing scheduler: connecting by address, over TCP or TLS, with one-line diagnoses."""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterator

import distributed
import distributed.system
from distributed.comm.core import FatalCommClosedError
from distributed.security import Security

from cluster.errors import (
    SchedulerUnreachableError,
    TLSConfigurationError,
)
from cluster.options import ClusterOptions

__all__ = ["connect_existing"]


def connect_existing(options: ClusterOptions) -> distributed.Client:
    """Connect to the scheduler at ``options.scheduler``; one-line errors for what fails.

    Raises
    ------
    SchedulerUnreachableError
        Nothing answered within ``options.connect_timeout_s``.
    TLSConfigurationError
        PEM files Python cannot load, or a handshake the scheduler rejects.
    """
    address = options.scheduler
    assert address is not None
    timeout = options.connect_timeout_s
    security = None
    if options.uses_tls:
        _check_tls_files(options)
        security = Security(
            tls_ca_file=options.tls_ca_file,
            tls_client_cert=options.tls_cert,
            tls_client_key=options.tls_key,
            require_encryption=True,
        )
    try:
        return distributed.Client(address, timeout=timeout, security=security)
    except OSError as exc:  # ssl.SSLError, CommClosedError and TimeoutError are OSErrors
        if security is not None and _is_tls_failure(exc):
            raise TLSConfigurationError(
                f"TLS with the dask scheduler at {address} failed: {_tls_reason(exc)};"
                " check --tls-ca-file, --tls-cert and --tls-key"
            ) from exc
        raise SchedulerUnreachableError(
            f"cannot reach the dask scheduler at {address} within {timeout:g} s"
            f" ({_root_reason(exc)}); check that it is running and the address"
        ) from exc


def _check_tls_files(options: ClusterOptions) -> None:
    """Load the PEM files as dask will, to name the faulty one before any handshake."""
    ca_file, cert, key = options.tls_ca_file, options.tls_cert, options.tls_key
    assert ca_file is not None and cert is not None and key is not None
    try:
        with open(key, "rb") as stream:
            encrypted = b"ENCRYPTED" in stream.read()
    except OSError as exc:
        raise TLSConfigurationError(f"cannot read --tls-key {key} ({exc.strerror})") from None
    if encrypted:
        raise TLSConfigurationError(
            f"--tls-key {key} is encrypted and dask cannot ask for its passphrase;"
            " give an unencrypted copy (openssl pkey -in KEY -out PLAIN_KEY)"
        )
    try:
        ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError):
        raise TLSConfigurationError(
            f"--tls-ca-file {ca_file} holds no PEM certificate; give the cluster CA's certificate"
        ) from None
    try:
        ssl.create_default_context().load_cert_chain(cert, key, password=lambda: b"")
    except (ssl.SSLError, OSError) as exc:
        if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
            raise TLSConfigurationError(
                f"--tls-key {key} is not the key of --tls-cert {cert}; give the matching pair"
            ) from None
        try:
            ssl.create_default_context(cafile=cert)
        except (ssl.SSLError, OSError):
            raise TLSConfigurationError(
                f"--tls-cert {cert} holds no PEM certificate; give this client's certificate"
            ) from None
        raise TLSConfigurationError(
            f"--tls-key {key} holds no PEM private key; give the key of --tls-cert {cert}"
        ) from None


#: What OpenSSL's codes mean for someone connecting to a dask scheduler.
_TLS_HINTS = {
    "TLSV1_ALERT_UNKNOWN_CA": "the scheduler does not trust --tls-cert (signed by another CA)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the scheduler rejected --tls-cert",
    "TLSV1_ALERT_ACCESS_DENIED": "the scheduler rejected --tls-cert",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the scheduler says --tls-cert has expired",
    "WRONG_VERSION_NUMBER": "the scheduler does not speak TLS at this address",
}


def _tls_reason(exc: BaseException) -> str:
    chain = list(_exception_chain(exc))
    for error in chain:
        if isinstance(error, ssl.SSLCertVerificationError):
            detail = error.verify_message or "verification failed"
            return f"the scheduler's certificate does not verify against --tls-ca-file ({detail})"
    codes = [code for error in chain for code in re.findall(r"\[SSL: ([A-Z0-9_]+)\]", str(error))]
    codes += [str(e.reason) for e in chain if isinstance(e, ssl.SSLError) and e.reason]
    for code in codes:
        if code in _TLS_HINTS:
            return f"{_TLS_HINTS[code]} ({code})"
    if any(isinstance(e, ssl.SSLEOFError) or "EOF occurred" in str(e) for e in chain):
        # TLS 1.3 lets the client finish its handshake before the server checks the
        # client's certificate: a rejection can then arrive as a bare end of stream.
        return "the scheduler closed the TLS connection; most likely it does not trust --tls-cert"
    return codes[0] if codes else _root_reason(exc)


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _is_tls_failure(exc: BaseException) -> bool:
    return any(isinstance(e, ssl.SSLError | FatalCommClosedError) for e in _exception_chain(exc))


def _root_reason(exc: BaseException) -> str:
    """The innermost useful message of an exception chain, on one short line."""
    chain = list(_exception_chain(exc))
    for error in reversed(chain):
        if isinstance(error, ssl.SSLError) and getattr(error, "reason", None):
            return str(error.reason)
    text = str(chain[-1]) or type(chain[-1]).__name__
    text = text.split(": ", 1)[-1] if text.startswith("in <") else text
    return " ".join(text.split())[:160]
