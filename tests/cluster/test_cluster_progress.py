"""compute_with_progress / wait_with_progress on a real embedded cluster."""

from __future__ import annotations

import _thread
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dask
import dask.array as da
import distributed
import numpy as np
import pytest

from cluster import progress
from cluster.client import connect
from cluster.errors import TaskKillsWorkersError, WorkersLostError
from cluster.options import ClusterOptions
from cluster.progress import compute_with_progress, wait_with_progress

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[distributed.Client]:
    scratch = str(tmp_path_factory.mktemp("scratch"))
    options = ClusterOptions(
        n_workers=2, threads_per_worker=1, memory_limit="512MiB", local_directory=scratch
    )
    with connect(options) as client:
        yield client


def _scheduler_tasks(client: distributed.Client) -> int:
    return len(client.cluster.scheduler.tasks)  # the embedded scheduler lives in this process


def _wait_until_no_tasks(client: distributed.Client, within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while _scheduler_tasks(client) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _scheduler_tasks(client) == 0


def _slow_add(a: int, b: int) -> int:
    time.sleep(0.05)
    return a + b


def _divide(a: float, b: float) -> float:
    return a / b


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_results_are_correct_and_the_bar_goes_to_stderr(
    client: distributed.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    values = np.arange(40_000, dtype=np.float64).reshape(200, 200)
    x = da.from_array(values, chunks=50)
    total, column_means = compute_with_progress(client, x.sum(), x.mean(axis=0), description="sums")
    assert total == values.sum()
    np.testing.assert_allclose(column_means, values.mean(axis=0))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "sums" in captured.err
    assert "100%" in captured.err
    assert "task" in captured.err


def test_the_bar_counts_every_task_of_the_graph(
    client: distributed.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    parts = [dask.delayed(_slow_add)(i, 1) for i in range(20)]
    total = dask.delayed(sum)(parts)
    (result,) = compute_with_progress(client, total, description="graph")
    assert result == sum(range(1, 21))
    err = capsys.readouterr().err
    assert "21/21" in err  # 20 additions and the sum, not 1 output
    assert "0task [" not in err  # the bar opens once its total is known, never as "0task [00:00, ?task/s]"


def test_the_bar_can_count_frames(client: distributed.Client, capsys: pytest.CaptureFixture[str]) -> None:
    """A graph over 300 frames: the bar shows frames, the share of the tasks done."""
    parts = [dask.delayed(_slow_add)(i, 1) for i in range(20)]
    future = client.compute(dask.delayed(sum)(parts))
    wait_with_progress(client, [future], description="separate", frames=300)
    assert future.result() == sum(range(1, 21))
    err = capsys.readouterr().err.replace("\r", "\n")
    assert "300/300" in err and "frame/s" in err
    assert "task" not in err
    shown = [int(m) for m in re.findall(r"\| *(\d+)/300", err)]
    assert shown == sorted(shown) and all(0 <= n <= 300 for n in shown)


def test_a_bar_done_at_once_shows_no_rate(
    client: distributed.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    """Work already done: no "4455631 frame/s" from a division by almost nothing."""
    future = client.compute(dask.delayed(sum)([1, 2, 3]))
    assert future.result() == 6
    wait_with_progress(client, [future], description="missed pixels", frames=341)
    err = capsys.readouterr().err.replace("\r", "\n")
    final = [line for line in err.splitlines() if "341/341" in line][-1]
    assert "/s" not in final and "missed pixels" in final and "[00:00]" in final


def test_persisted_collections_and_plain_values(
    client: distributed.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    x = client.persist(da.ones((100, 100), chunks=25))
    distributed.wait(x)
    result, plain = compute_with_progress(client, (x * 2).sum(), 7, description="persisted")
    assert result == 20_000
    assert plain == 7
    assert compute_with_progress(client, description="nothing", show=False) == []
    assert capsys.readouterr().out == ""


def test_show_false_prints_nothing(client: distributed.Client, capsys: pytest.CaptureFixture[str]) -> None:
    x = da.arange(1000, chunks=100)
    (result,) = compute_with_progress(client, x.sum(), description="quiet", show=False)
    assert result == sum(range(1000))
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""


@pytest.mark.parametrize("show", [True, False])
def test_a_task_error_keeps_its_type(client: distributed.Client, show: bool) -> None:
    good = dask.delayed(_slow_add)(1, 2)
    bad = dask.delayed(_divide)(1.0, 0.0)
    with pytest.raises(ZeroDivisionError):
        compute_with_progress(client, good, bad, description="failing", show=show)
    _wait_until_no_tasks(client)


def test_keyboard_interrupt_cancels_the_futures(client: distributed.Client) -> None:
    work = [dask.delayed(_sleep)(0.5, dask_key_name=f"sleep-{i}") for i in range(20)]
    timer = threading.Timer(0.5, _thread.interrupt_main)
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            compute_with_progress(client, *work, description="interrupted", show=True)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 4  # 20 x 0.5 s on 2 threads would take 5 s
    _wait_until_no_tasks(client)


def test_wait_with_progress_returns_finished_futures(
    client: distributed.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    futures = client.compute([da.ones(1000, chunks=100).sum(), dask.delayed(_slow_add)(2, 3)])
    done = wait_with_progress(client, futures, description="waiting")
    assert [f.status for f in done] == ["finished", "finished"]
    assert client.gather(done) == [1000, 5]
    assert "waiting" in capsys.readouterr().err

    failing = client.compute(dask.delayed(_divide)(1, 0))
    with pytest.raises(ZeroDivisionError):
        wait_with_progress(client, [failing], description="waiting", show=False)
    assert capsys.readouterr().err == ""


@pytest.fixture
def vanishing_cluster() -> Iterator[tuple[distributed.LocalCluster, distributed.Client]]:
    """One in-process worker of its own cluster, which a test may take away."""
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield cluster, client


def test_a_cluster_left_without_workers_stops_the_wait(
    vanishing_cluster: tuple[distributed.LocalCluster, distributed.Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster, client = vanishing_cluster
    monkeypatch.setattr(progress, "WORKER_CHECK_S", 0.2)
    future = client.submit(_sleep, 60.0)
    cluster.scale(0)
    started = time.monotonic()
    with pytest.raises(
        WorkersLostError, match=r"every dask worker left .* none came back within 1 s"
    ) as caught:
        wait_with_progress(client, [future], description="abandoned", workerless_timeout_s=1.0)
    assert isinstance(caught.value, RuntimeError)
    assert "\n" not in str(caught.value) and "workers' logs" in str(caught.value)
    assert time.monotonic() - started < 10
    assert future.cancelled()


def test_a_worker_that_comes_back_in_time_finishes_the_work(
    vanishing_cluster: tuple[distributed.LocalCluster, distributed.Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster, client = vanishing_cluster
    monkeypatch.setattr(progress, "WORKER_CHECK_S", 0.2)
    future = client.submit(_slow_add, 2, 3)
    cluster.scale(0)
    timer = threading.Timer(1.5, cluster.scale, args=(1,))  # back after several checks saw none
    timer.start()
    try:
        wait_with_progress(client, [future], description="resumed", workerless_timeout_s=30.0)
    finally:
        timer.cancel()
    assert future.result() == 5


def test_a_scheduler_that_cannot_tell_its_workers_is_not_taken_for_one_without(
    client: distributed.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unanswered(_: distributed.Client) -> int:
        raise OSError("the scheduler did not answer")

    monkeypatch.setattr(progress, "worker_count", unanswered)
    monkeypatch.setattr(progress, "WORKER_CHECK_S", 0.05)
    future = client.submit(_sleep, 0.6, pure=False)
    done = wait_with_progress(client, [future], description="unanswered", workerless_timeout_s=0.1)
    assert [f.result() for f in done] == [0.6]


def _die() -> None:
    os._exit(1)  # the worker process ends as an out-of-memory kill would end it


def test_a_task_that_kills_every_worker_it_runs_on_is_one_line(tmp_path: Path) -> None:
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            local_directory=str(tmp_path),
        ) as cluster,
        distributed.Client(cluster) as own,
    ):
        future = own.submit(_die, pure=False)
        with pytest.raises(TaskKillsWorkersError) as caught:
            wait_with_progress(own, [future], description="dying")
    message = str(caught.value)
    assert isinstance(caught.value, RuntimeError) and "\n" not in message
    assert "was run on 2 dask workers and each died while running it" in message
    assert "--memory-limit" in message and "workers' logs" in message
