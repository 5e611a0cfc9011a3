"""ClusterOptions validation and embedded-cluster sizing: no processes, no network."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cluster.batch_options import BatchOptions
from cluster.embedded import EmbeddedPlan, plan_embedded
from cluster.errors import (
    ClusterError,
    InvalidClusterOptionError,
    NoWorkersError,
    SchedulerUnreachableError,
    TLSConfigurationError,
)
from cluster.options import WORKERLESS_TIMEOUT_S, ClusterOptions

GiB = 1 << 30


@pytest.fixture
def pem_files(tmp_path: Path) -> dict[str, str]:
    """Three files that exist (validation only checks presence, not content)."""
    files = {}
    for name in ("tls_ca_file", "tls_cert", "tls_key"):
        path = tmp_path / f"{name}.pem"
        path.write_text("-----BEGIN NOTHING-----\n")
        files[name] = str(path)
    return files


def _error(options: ClusterOptions, kind: type[Exception]) -> str:
    with pytest.raises(kind) as info:
        options.validate()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_error_hierarchy_matches_builtins() -> None:
    assert issubclass(SchedulerUnreachableError, ClusterError)
    assert issubclass(SchedulerUnreachableError, ConnectionError)
    assert issubclass(InvalidClusterOptionError, ClusterError)
    assert issubclass(InvalidClusterOptionError, ValueError)
    assert issubclass(TLSConfigurationError, ClusterError)
    assert issubclass(TLSConfigurationError, ValueError)
    assert issubclass(NoWorkersError, ClusterError)


def test_options_are_frozen_and_keyword_only() -> None:
    options = ClusterOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.n_workers = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        ClusterOptions("tcp://127.0.0.1:8786")  # type: ignore[misc]


@pytest.mark.parametrize(
    "options",
    [
        ClusterOptions(),
        ClusterOptions(n_workers=1, threads_per_worker=1, memory_limit="4GB"),
        ClusterOptions(memory_limit=123_456_789, dashboard=False),
        ClusterOptions(scheduler="tcp://127.0.0.1:8786"),
        ClusterOptions(scheduler="127.0.0.1:8786", connect_timeout_s=0.5),
        ClusterOptions(scheduler="tcp://scheduler.example.org:8786", connect_timeout_s=60),
    ],
)
def test_valid_options_pass(options: ClusterOptions) -> None:
    options.validate()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("4GB", 4_000_000_000), ("4GiB", 4 * GiB), ("512 MiB", 512 << 20), (1000, 1000), ("1000", 1000)],
)
def test_memory_limit_parses_sizes(value: str | int, expected: int) -> None:
    assert ClusterOptions(memory_limit=value).memory_limit_bytes == expected
    assert ClusterOptions().memory_limit_bytes is None


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("n_workers", 0, "--workers"),
        ("n_workers", -2, "--workers"),
        ("n_workers", True, "--workers"),
        ("n_workers", 1.5, "--workers"),
        ("threads_per_worker", 0, "--threads-per-worker"),
        ("memory_limit", "lots", "--memory-limit"),
        ("memory_limit", "4 parsecs", "--memory-limit"),
        ("memory_limit", "0", "--memory-limit"),
        ("memory_limit", 0, "--memory-limit"),
        ("memory_limit", -5, "--memory-limit"),
        ("memory_limit", "-1GB", "--memory-limit"),
        ("memory_limit", 2.5, "--memory-limit"),
        ("connect_timeout_s", 0, "--connect-timeout-s"),
        ("connect_timeout_s", -1.0, "--connect-timeout-s"),
        ("connect_timeout_s", float("nan"), "--connect-timeout-s"),
        ("connect_timeout_s", float("inf"), "--connect-timeout-s"),
    ],
)
def test_out_of_range_values_are_refused(field: str, value: object, flag: str) -> None:
    message = _error(ClusterOptions(**{field: value}), InvalidClusterOptionError)  # type: ignore[arg-type]
    assert flag in message
    assert repr(value) in message or str(value) in message


def test_local_directory_that_is_a_file_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "scratch"
    a_file.write_text("")
    message = _error(ClusterOptions(local_directory=str(a_file)), InvalidClusterOptionError)
    assert "--local-directory" in message and str(a_file) in message
    ClusterOptions(local_directory=str(tmp_path / "not-yet")).validate()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"n_workers": 2}, ["--workers"]),
        ({"threads_per_worker": 2}, ["--threads-per-worker"]),
        ({"memory_limit": "2GB"}, ["--memory-limit"]),
        ({"local_directory": "scratch"}, ["--local-directory"]),
        ({"dashboard": False}, ["--no-dashboard"]),
        ({"n_workers": 2, "memory_limit": "2GB"}, ["--workers", "--memory-limit"]),
    ],
)
def test_embedded_only_options_with_a_scheduler_are_named(extra: dict[str, object], named: list[str]) -> None:
    options = ClusterOptions(scheduler="tcp://127.0.0.1:8786", **extra)  # type: ignore[arg-type]
    message = _error(options, InvalidClusterOptionError)
    for flag in named:
        assert flag in message
    assert "tcp://127.0.0.1:8786" in message
    assert "--scheduler" in message


@pytest.mark.parametrize(
    ("address", "hint"),
    [
        ("", "tcp://host:8786"),
        ("  tcp://127.0.0.1:8786", "tcp://host:8786"),
        ("http://127.0.0.1:8787", "dashboard"),
        ("foo://127.0.0.1:8786", "'foo'"),
        ("tcp://127.0.0.1", "needs a host and a port"),
        ("tcp://127.0.0.1:99999", "needs a host and a port"),
        ("tcp://:8786", "needs a host and a port"),
    ],
)
def test_malformed_scheduler_addresses_are_refused(address: str, hint: str) -> None:
    message = _error(ClusterOptions(scheduler=address), InvalidClusterOptionError)
    assert hint in message


def test_missing_tls_file_is_named(pem_files: dict[str, str], tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere" / "client.key")
    options = ClusterOptions(scheduler="tls://127.0.0.1:8786", **{**pem_files, "tls_key": missing})
    message = _error(options, TLSConfigurationError)
    assert "--tls-key" in message and missing in message and "does not exist" in message


def test_tls_file_that_is_a_directory_is_named(pem_files: dict[str, str], tmp_path: Path) -> None:
    options = ClusterOptions(scheduler="tls://127.0.0.1:8786", **{**pem_files, "tls_ca_file": str(tmp_path)})
    message = _error(options, TLSConfigurationError)
    assert "--tls-ca-file" in message and "not a file" in message


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        (("tls_cert",), ["--tls-ca-file", "--tls-key"]),
        (("tls_ca_file", "tls_cert"), ["--tls-key"]),
        (("tls_key",), ["--tls-ca-file", "--tls-cert"]),
    ],
)
def test_partial_tls_is_refused(
    pem_files: dict[str, str], given: tuple[str, ...], missing: list[str]
) -> None:
    options = ClusterOptions(scheduler="tls://127.0.0.1:8786", **{k: pem_files[k] for k in given})
    message = _error(options, TLSConfigurationError)
    assert message.endswith("missing " + ", ".join(missing))


def test_tls_address_without_files_is_refused() -> None:
    message = _error(ClusterOptions(scheduler="tls://127.0.0.1:8786"), TLSConfigurationError)
    assert "--tls-ca-file" in message


def test_tls_files_need_a_tls_address(pem_files: dict[str, str]) -> None:
    message = _error(ClusterOptions(scheduler="tcp://127.0.0.1:8786", **pem_files), TLSConfigurationError)
    assert "tls://" in message
    ClusterOptions(scheduler="tls://127.0.0.1:8786", **pem_files).validate()


def test_tls_files_without_scheduler_are_refused(pem_files: dict[str, str]) -> None:
    message = _error(ClusterOptions(**pem_files), TLSConfigurationError)
    assert "--scheduler" in message


@pytest.mark.parametrize(
    ("cores", "n_workers", "threads", "expected"),
    [
        (1, None, None, (1, 1)),
        (2, None, None, (1, 2)),
        (4, None, None, (1, 4)),
        (8, None, None, (1, 8)),
        (12, None, None, (2, 6)),
        (16, None, None, (2, 8)),
        (32, None, None, (4, 8)),
        (8, 3, None, (3, 2)),
        (8, None, 4, (2, 4)),
        (2, None, 4, (1, 4)),
        (2, 4, 2, (4, 2)),
    ],
)
def test_embedded_plan_splits_the_cores(
    cores: int, n_workers: int | None, threads: int | None, expected: tuple[int, int]
) -> None:
    options = ClusterOptions(n_workers=n_workers, threads_per_worker=threads)
    plan = plan_embedded(options, cores=cores, memory_bytes=64 * GiB)
    assert (plan.n_workers, plan.threads_per_worker) == expected


@pytest.mark.parametrize(
    ("cores", "n_workers", "threads", "in_process"),
    [
        (2, None, None, True),
        (8, None, None, True),
        (12, None, None, False),  # two workers: processes
        (2, 1, None, False),  # counted workers are processes
        (2, None, 2, False),
    ],
)
def test_an_unsized_single_worker_runs_in_process(
    cores: int, n_workers: int | None, threads: int | None, in_process: bool
) -> None:
    options = ClusterOptions(n_workers=n_workers, threads_per_worker=threads)
    assert plan_embedded(options, cores=cores, memory_bytes=64 * GiB).in_process is in_process


def test_embedded_plan_divides_memory_with_headroom() -> None:
    plan = plan_embedded(ClusterOptions(n_workers=4), cores=8, memory_bytes=64 * GiB)
    assert plan.memory_limit * 4 <= 64 * GiB * 0.9
    assert plan.memory_limit * 4 >= 64 * GiB * 0.85
    small = plan_embedded(ClusterOptions(n_workers=1), cores=1, memory_bytes=2 * GiB)
    assert small.memory_limit == 2 * GiB - GiB // 2  # headroom capped at a quarter
    medium = plan_embedded(ClusterOptions(n_workers=2), cores=2, memory_bytes=8 * GiB)
    assert medium.memory_limit == (8 * GiB - GiB) // 2  # at least 1 GiB of headroom


def test_embedded_plan_keeps_a_given_limit_and_refuses_overcommit() -> None:
    plan = plan_embedded(ClusterOptions(n_workers=2, memory_limit="1GiB"), cores=2, memory_bytes=8 * GiB)
    assert plan == EmbeddedPlan(n_workers=2, threads_per_worker=1, memory_limit=GiB)
    with pytest.raises(InvalidClusterOptionError, match=r"--memory-limit 8\.00 GiB x 4 workers exceeds"):
        plan_embedded(ClusterOptions(n_workers=4, memory_limit="8GiB"), cores=4, memory_bytes=16 * GiB)


def test_embedded_plan_defaults_to_this_machine() -> None:
    plan = plan_embedded(ClusterOptions())
    assert plan.n_workers >= 1 and plan.threads_per_worker >= 1
    assert plan.memory_limit > 0


def test_a_batch_cluster_waits_for_lost_workers_as_long_as_for_its_jobs_to_start() -> None:
    batch = BatchOptions(system="slurm", jobs=1, job_cores=1, job_memory="1GiB", start_timeout_s=42.0)
    assert ClusterOptions(batch=batch).workerless_timeout_s == 42.0
    assert ClusterOptions().workerless_timeout_s == WORKERLESS_TIMEOUT_S
    assert ClusterOptions(scheduler="tcp://127.0.0.1:8786").workerless_timeout_s == WORKERLESS_TIMEOUT_S


def test_the_workerless_timeout_given_applies_to_every_cluster() -> None:
    batch = BatchOptions(system="slurm", jobs=1, job_cores=1, job_memory="1GiB", start_timeout_s=42.0)
    assert ClusterOptions(batch=batch, workerless_timeout=7.5).workerless_timeout_s == 7.5
    assert ClusterOptions(workerless_timeout=3).workerless_timeout_s == 3.0
    options = ClusterOptions(scheduler="tcp://127.0.0.1:8786", workerless_timeout=1800.0)
    options.validate()
    assert options.workerless_timeout_s == 1800.0


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True, "600"])
def test_a_workerless_timeout_that_is_not_positive_seconds_is_refused(value: object) -> None:
    with pytest.raises(
        InvalidClusterOptionError, match="--workerless-timeout must be a positive number of seconds"
    ):
        ClusterOptions(workerless_timeout=value).validate()  # type: ignore[arg-type]
