"""An existing scheduler: real `dask scheduler` / `dask worker` processes, plain TCP and TLS.

Every process is started in its own session, bound to 127.0.0.1 with port 0, logs to
files in a temporary folder, and is terminated (then killed, with its children) at the
end of its fixture.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import dask.array as da
import pytest

from cluster.client import connect, dashboard_link, describe, peak_worker_memory, worker_memory_limit
from cluster.errors import SchedulerUnreachableError, TLSConfigurationError
from cluster.options import ClusterOptions
from cluster.progress import compute_with_progress
from tests.external_cluster import START_TIMEOUT_S, ExternalCluster

pytestmark = pytest.mark.timeout(180)

MiB = 1 << 20


def _wait_for_workers(options: ClusterOptions, n: int) -> None:
    with connect(options) as client:
        client.wait_for_workers(n, timeout=START_TIMEOUT_S)


@pytest.fixture(scope="module")
def tcp_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExternalCluster]:
    cluster = ExternalCluster(tmp_path_factory.mktemp("tcp-cluster"))
    try:
        cluster.start_scheduler()
        cluster.start_worker("worker-a", "300MiB")
        cluster.start_worker("worker-b", "400MiB")
        _wait_for_workers(ClusterOptions(scheduler=cluster.address), 2)
        yield cluster
    finally:
        cluster.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_existing_cluster_computes(tcp_cluster: ExternalCluster) -> None:
    with connect(ClusterOptions(scheduler=tcp_cluster.address)) as client:
        x = da.arange(100_000, chunks=10_000)
        assert x.sum().compute() == sum(range(100_000))
        info = client.scheduler_info()
        assert info["address"] == tcp_cluster.address
        used = [Path(w["local_directory"]) for w in info["workers"].values()]
        for directory in tcp_cluster.worker_directories:  # each worker in its own directory
            assert sum(directory in path.parents for path in used) == 1

        assert (
            describe(client)
            == f"dask scheduler {tcp_cluster.address}: 2 workers, 2 threads, 700.00 MiB memory"
        )
        assert worker_memory_limit(client) == 300 * MiB
        peak = peak_worker_memory(client)
        assert peak is not None and peak > 10 * MiB
        link = dashboard_link(client)
        assert link is not None and urlparse(link).hostname == "127.0.0.1"
    assert client.status == "closed"
    assert all(p.poll() is None for p in tcp_cluster.processes), (
        "closing the client must not stop the cluster"
    )


def test_existing_cluster_with_progress_and_address_without_scheme(
    tcp_cluster: ExternalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    address = tcp_cluster.address.removeprefix("tcp://")
    with connect(ClusterOptions(scheduler=address)) as client:
        x = da.ones((400, 400), chunks=100)
        (total,) = compute_with_progress(client, (x + x.T).sum(), description="external")
    assert total == 2 * 400 * 400
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "external" in captured.err and "100%" in captured.err


def test_unreachable_scheduler_fails_fast_with_a_clear_message() -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with (
        pytest.raises(SchedulerUnreachableError) as info,
        connect(ClusterOptions(scheduler=address, connect_timeout_s=1.5)),
    ):
        pass
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert message.startswith(f"cannot reach the dask scheduler at {address} within 1.5 s")
    assert message.endswith("check that it is running and the address")
    assert "\n" not in message
    assert isinstance(info.value, ConnectionError)


@pytest.mark.slow
def test_unreachable_scheduler_with_the_default_timeout_fails_within_30_s() -> None:
    started = time.monotonic()
    with (
        pytest.raises(SchedulerUnreachableError, match="within 20 s"),
        connect(ClusterOptions(scheduler="tcp://127.0.0.1:1")),
    ):
        pass
    assert time.monotonic() - started < 30


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class Authority:
    ca_file: Path
    cert: Path
    key: Path


def _make_authority(folder: Path, name: str) -> Authority:
    """A CA and one certificate it signs (shared by scheduler, workers and client)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dask")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    authority = Authority(folder / f"{name}-ca.pem", folder / f"{name}-cert.pem", folder / f"{name}-key.pem")
    authority.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    authority.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    authority.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return authority


def _tls_args(authority: Authority) -> list[str]:
    return [
        "--tls-ca-file",
        str(authority.ca_file),
        "--tls-cert",
        str(authority.cert),
        "--tls-key",
        str(authority.key),
    ]


def _tls_options(address: str, ca_file: Path, cert: Path, key: Path, **extra: float) -> ClusterOptions:
    return ClusterOptions(
        scheduler=address, tls_ca_file=str(ca_file), tls_cert=str(cert), tls_key=str(key), **extra
    )


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ExternalCluster, Authority]]:
    pytest.importorskip("cryptography")
    folder = tmp_path_factory.mktemp("tls-cluster")
    authority = _make_authority(folder, "cluster")
    cluster = ExternalCluster(folder)
    try:
        cluster.start_scheduler("--protocol", "tls", *_tls_args(authority))
        cluster.start_worker("worker", "300MiB", *_tls_args(authority))
        assert cluster.address.startswith("tls://127.0.0.1:")
        a = authority
        _wait_for_workers(_tls_options(cluster.address, a.ca_file, a.cert, a.key), 1)
        yield cluster, authority
    finally:
        cluster.stop()


def test_tls_end_to_end(
    tls_cluster: tuple[ExternalCluster, Authority], capsys: pytest.CaptureFixture[str]
) -> None:
    cluster, a = tls_cluster
    with connect(_tls_options(cluster.address, a.ca_file, a.cert, a.key)) as client:
        assert client.submit(lambda v: v * 2, 21).result() == 42
        assert da.arange(1000, chunks=100).sum().compute() == sum(range(1000))
        assert describe(client).startswith(f"dask scheduler {cluster.address}: 1 worker, 1 thread,")
        # the progress bar opens its own TLS connection to the scheduler
        (total,) = compute_with_progress(client, da.ones(1000, chunks=100).sum(), description="tls")
    assert total == 1000
    done = re.findall(r"100%\|[^|]*\| (\d+)/(\d+) ", capsys.readouterr().err)
    assert done and int(done[-1][0]) == int(done[-1][1]) > 10  # tasks, counted over TLS


def test_tls_with_a_foreign_authority_is_a_configuration_error(
    tls_cluster: tuple[ExternalCluster, Authority], tmp_path: Path
) -> None:
    cluster, a = tls_cluster
    other = _make_authority(tmp_path, "other")
    for (ca_file, cert, key), reason in [
        ((other.ca_file, other.cert, other.key), "does not verify against --tls-ca-file"),
        ((a.ca_file, other.cert, other.key), "does not trust --tls-cert"),
        ((other.ca_file, a.cert, a.key), "does not verify against --tls-ca-file"),
    ]:
        started = time.monotonic()
        with (
            pytest.raises(TLSConfigurationError) as info,
            connect(_tls_options(cluster.address, ca_file, cert, key, connect_timeout_s=10)),
        ):
            pass
        assert time.monotonic() - started < 10
        message = str(info.value)
        assert message.startswith(f"TLS with the dask scheduler at {cluster.address} failed: ")
        assert reason in message
        assert "\n" not in message


def test_tls_with_unusable_pem_files_names_the_file(
    tls_cluster: tuple[ExternalCluster, Authority], tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization

    cluster, a = tls_cluster
    other = _make_authority(tmp_path, "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not a certificate\n")
    encrypted = tmp_path / "encrypted-key.pem"
    key = serialization.load_pem_private_key(a.key.read_bytes(), password=None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    cases = [
        ((a.ca_file, a.cert, other.key), f"--tls-key {other.key} is not the key of --tls-cert {a.cert}"),
        ((a.ca_file, garbage, a.key), f"--tls-cert {garbage} holds no PEM certificate"),
        ((garbage, a.cert, a.key), f"--tls-ca-file {garbage} holds no PEM certificate"),
        ((a.ca_file, a.cert, garbage), f"--tls-key {garbage} holds no PEM private key"),
        ((a.ca_file, a.cert, a.cert), f"--tls-key {a.cert} holds no PEM private key"),
        ((a.ca_file, a.cert, encrypted), f"--tls-key {encrypted} is encrypted"),
    ]
    for (ca_file, cert, key_file), expected in cases:
        with (
            pytest.raises(TLSConfigurationError) as info,
            connect(_tls_options(cluster.address, ca_file, cert, key_file, connect_timeout_s=5)),
        ):
            pass
        assert str(info.value).startswith(expected)
        assert "\n" not in str(info.value)


def test_plain_tcp_to_a_tls_scheduler_is_unreachable(tls_cluster: tuple[ExternalCluster, Authority]) -> None:
    cluster, _ = tls_cluster
    address = cluster.address.replace("tls://", "tcp://")
    started = time.monotonic()
    with (
        pytest.raises(SchedulerUnreachableError, match=address),
        connect(ClusterOptions(scheduler=address, connect_timeout_s=3)),
    ):
        pass
    assert time.monotonic() - started < 10
