"""The embedded LocalCluster: computes, listens on 127.0.0.1 only, closes everything it opened."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import dask.array as da
import dask.config
import dask.system
import distributed
import numpy as np
import psutil
import pytest
import threadpoolctl

from cluster.client import (
    GRAPH_CONFIG,
    connect,
    dashboard_link,
    describe,
    peak_worker_memory,
    scheduler_workers,
    worker_memory_limit,
)
from cluster.embedded import WORKER_MALLOC_ENVIRONMENT
from cluster.options import ClusterOptions

pytestmark = pytest.mark.timeout(120)

MiB = 1 << 20


def _listening(process: psutil.Process) -> list[str]:
    try:
        connections = process.net_connections(kind="inet")
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return []
    return [c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN]


def _command_line(process: psutil.Process) -> str:
    """The process's command line; empty for one that ended (a zombie another test left)."""
    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return ""


def _assert_gone(pids: list[int], within_s: float = 15.0) -> None:
    deadline = time.monotonic() + within_s
    alive = pids
    while time.monotonic() < deadline:
        alive = [
            p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]
        if not alive:
            return
        time.sleep(0.1)
    raise AssertionError(f"worker processes still running: {alive}")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[distributed.Client]:
    scratch = tmp_path_factory.mktemp("scratch")
    options = ClusterOptions(
        n_workers=2, threads_per_worker=1, memory_limit="512MiB", local_directory=str(scratch)
    )
    with connect(options) as client:
        yield client


def test_embedded_cluster_computes_binds_loopback_and_closes(tmp_path: Path) -> None:
    options = ClusterOptions(
        n_workers=2, threads_per_worker=1, memory_limit="512MiB", local_directory=str(tmp_path)
    )
    with connect(options) as client:
        cluster = client.cluster
        x = da.arange(10_000, chunks=1_000)
        assert x.sum().compute() == sum(range(10_000))  # the client is dask's default scheduler
        assert client.submit(lambda a: a + 1, 41).result() == 42

        info = client.scheduler_info()
        assert info["address"].startswith("tcp://127.0.0.1:")
        assert cluster.scheduler_address == info["address"]
        assert len(info["workers"]) == 2
        assert all(address.startswith("tcp://127.0.0.1:") for address in info["workers"])
        link = dashboard_link(client)
        assert link is not None and urlparse(link).hostname == "127.0.0.1"

        me = psutil.Process()
        addresses = [ip for p in [me, *me.children(recursive=True)] for ip in _listening(p)]
        assert addresses, "the cluster should listen somewhere"
        assert set(addresses) == {"127.0.0.1"}, f"listening beyond loopback: {addresses}"

        worker_pids = list(client.run(os.getpid).values())
        assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    assert client.status == "closed"
    assert cluster.status == distributed.core.Status.closed
    _assert_gone(worker_pids)


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine as the default plan sees it: two cores, so one worker of two threads."""
    monkeypatch.setattr(dask.system, "cpu_count", lambda: 2)


@pytest.mark.usefixtures("two_cores")
def test_the_default_cluster_runs_its_worker_in_this_process_with_one_blas_thread_per_task(
    tmp_path: Path,
) -> None:
    blas_before = _blas_threads()
    with connect(ClusterOptions(local_directory=str(tmp_path))) as client:
        cluster = client.cluster
        assert client.submit(os.getpid, pure=False).result() == os.getpid()
        assert set(client.submit(_blas_threads, pure=False).result()) == {1}
        assert da.arange(10_000, chunks=1_000).sum().compute() == sum(range(10_000))
        workers = scheduler_workers(client)
        assert len(workers) == 1 and [w["nthreads"] for w in workers.values()] == [2]
        # in-process transport: results reach the caller without a socket or a copy
        assert all(address.startswith("inproc://") for address in workers)
        assert str(client.scheduler.address).startswith("inproc://")
        link = dashboard_link(client)
        assert link is not None and urlparse(link).hostname == "127.0.0.1"
        with urllib.request.urlopen(link.replace("/status", "/health"), timeout=10) as answer:
            assert answer.read() == b"ok"  # the dashboard's server is where the link says
        assert set(_listening(psutil.Process())) == {"127.0.0.1"}  # distributed's HTTP servers
        assert describe(client).startswith(
            "dask scheduler in this process: 1 worker in this process, 2 threads,"
        )
        assert not [p for p in psutil.Process().children(recursive=True) if "spawn" in _command_line(p)]
    assert client.status == "closed"
    assert cluster.status == distributed.core.Status.closed
    assert _blas_threads() == blas_before


@pytest.mark.usefixtures("two_cores")
def test_a_keyboard_interrupt_closes_the_in_process_cluster_and_gives_blas_its_threads_back(
    tmp_path: Path,
) -> None:
    blas_before = _blas_threads()
    with pytest.raises(KeyboardInterrupt), connect(ClusterOptions(local_directory=str(tmp_path))) as client:
        cluster = client.cluster
        assert client.submit(os.getpid, pure=False).result() == os.getpid()
        raise KeyboardInterrupt
    assert client.status == "closed"
    assert cluster.status == distributed.core.Status.closed
    assert _blas_threads() == blas_before


def test_counted_workers_are_processes(tmp_path: Path) -> None:
    options = ClusterOptions(n_workers=1, threads_per_worker=2, local_directory=str(tmp_path))
    with connect(options) as client:
        assert client.submit(os.getpid, pure=False).result() != os.getpid()


def test_keyboard_interrupt_closes_client_and_cluster(tmp_path: Path) -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        connect(ClusterOptions(n_workers=1, threads_per_worker=1, local_directory=str(tmp_path))) as client,
    ):
        cluster = client.cluster
        worker_pids = list(client.run(os.getpid).values())
        raise KeyboardInterrupt
    assert client.status == "closed"
    assert cluster.status == distributed.core.Status.closed
    _assert_gone(worker_pids)


def _sigint_blocked_here() -> bool:
    return signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())


def test_workers_do_not_die_of_a_terminal_ctrl_c(tmp_path: Path) -> None:
    """Ctrl-C signals the whole process group: only this process must take it."""
    with connect(ClusterOptions(n_workers=1, threads_per_worker=1, local_directory=str(tmp_path))) as client:
        assert not _sigint_blocked_here()  # this process still gets its KeyboardInterrupt
        (pid,) = client.run(os.getpid).values()
        assert set(client.run(_sigint_blocked_here).values()) == {True}
        os.kill(pid, signal.SIGINT)
        time.sleep(0.5)
        assert client.submit(sum, [1, 2]).result() == 3
        assert list(client.run(os.getpid).values()) == [pid]
        client.restart()  # a nanny's new worker process is shielded too
        (restarted,) = client.run(os.getpid).values()
        assert restarted != pid
        assert set(client.run(_sigint_blocked_here).values()) == {True}


def test_without_dashboard_there_is_no_link(tmp_path: Path) -> None:
    options = ClusterOptions(
        n_workers=1, threads_per_worker=1, dashboard=False, local_directory=str(tmp_path)
    )
    with connect(options) as client:
        assert dashboard_link(client) is None
        assert client.submit(sum, [1, 2]).result() == 3


def test_describe_is_one_line_with_the_cluster_size(client: distributed.Client) -> None:
    text = describe(client)
    assert "\n" not in text
    assert client.scheduler.address in text
    assert "2 workers, 2 threads, 1.00 GiB memory" in text


def _malloc_environment() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in WORKER_MALLOC_ENVIRONMENT}


def test_workers_start_with_the_malloc_settings_and_keep_them_on_restart(client: distributed.Client) -> None:
    before = client.run(_malloc_environment)
    assert len(before) == 2
    assert all(environment == WORKER_MALLOC_ENVIRONMENT for environment in before.values())
    client.restart()
    found = client.run(_malloc_environment)
    assert len(found) == 2
    assert all(environment == WORKER_MALLOC_ENVIRONMENT for environment in found.values())


def test_a_users_own_nanny_environment_is_kept(tmp_path: Path) -> None:
    options = ClusterOptions(n_workers=1, threads_per_worker=1, local_directory=str(tmp_path))
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ.VIDSVD_TEST_SETTING": "kept"}),
        connect(options) as client,
    ):
        (found,) = client.run(os.environ.get, "VIDSVD_TEST_SETTING").values()
        assert found == "kept"
        (malloc,) = client.run(_malloc_environment).values()
        assert malloc == WORKER_MALLOC_ENVIRONMENT


def test_worker_memory_limit_is_the_per_worker_limit(client: distributed.Client) -> None:
    assert worker_memory_limit(client) == 512 * MiB


def test_the_workers_are_asked_of_the_scheduler_not_of_the_clients_cache(
    client: distributed.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Client's periodic update may leave its cached identity without workers at any moment."""
    monkeypatch.setattr(client, "scheduler_info", lambda *args, **kwargs: {"workers": {}, "services": {}})
    workers = scheduler_workers(client)
    assert len(workers) == 2 and all(worker["nthreads"] == 1 for worker in workers.values())
    assert "2 workers, 2 threads" in describe(client)
    assert worker_memory_limit(client) == 512 * MiB


def test_peak_worker_memory_reports_a_process_size(client: distributed.Client) -> None:
    client.submit(np.ones, 1000).result()
    peak = peak_worker_memory(client)
    assert peak is not None
    assert 10 * MiB < peak < 2048 * MiB


def test_workers_use_the_local_directory(
    client: distributed.Client, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.getbasetemp()
    directories = [Path(w["local_directory"]) for w in client.scheduler_info()["workers"].values()]
    assert len(directories) == 2
    assert all(root in d.parents for d in directories)


def test_a_coroutine_cancelled_at_shutdown_is_not_logged(tmp_path: Path) -> None:
    seen = io.StringIO()
    handler = logging.StreamHandler(seen)  # as distributed's own logging config adds
    logging.getLogger("distributed").addHandler(handler)
    try:
        with connect(ClusterOptions(n_workers=1, threads_per_worker=1, local_directory=str(tmp_path))):
            log = logging.getLogger("distributed.scheduler")
            for error in (asyncio.CancelledError(), RuntimeError("a real failure")):
                try:
                    raise error
                except BaseException:
                    log.exception("")
    finally:
        logging.getLogger("distributed").removeHandler(handler)
    assert "CancelledError" not in seen.getvalue()
    assert "RuntimeError: a real failure" in seen.getvalue()


@pytest.mark.usefixtures("two_cores")
def test_while_connected_rechunks_are_tasks_and_graphs_may_carry_pixel_maps(tmp_path: Path) -> None:
    """No P2P shuffle (whose start and end distributed logs as warnings) and no warning for
    a graph that carries a 4K threshold map; dask's own settings come back on exit."""
    before = {key: dask.config.get(key, None) for key in GRAPH_CONFIG}
    wide = da.ones((1000, 1000), chunks=(1, 1000))  # an all-to-all rechunk: P2P under a Client by default
    with connect(ClusterOptions(local_directory=str(tmp_path))) as client:
        assert {key: dask.config.get(key) for key in GRAPH_CONFIG} == GRAPH_CONFIG
        layers = {str(key[0] if isinstance(key, tuple) else key) for key in wide.rechunk((1000, 1)).dask}
        assert not [name for name in layers if "p2p" in name or "shuffle" in name or "transfer" in name]
        threshold_map = np.full((2160, 3840), 20.0, dtype=np.float32)  # 33 MB
        frames = da.zeros((4, 2160, 3840), dtype=np.float32, chunks=(2, -1, -1))
        marked = frames.map_blocks(lambda block, level: block > level, level=threshold_map, dtype=bool)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "Sending large graph" would raise here
            assert client.compute(marked.sum()).result() == 0
    assert {key: dask.config.get(key, None) for key in GRAPH_CONFIG} == before
