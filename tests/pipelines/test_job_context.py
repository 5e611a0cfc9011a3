"""The job context: one Client for every step of ``vidsvd run``, none when nothing is left to do."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import distributed
import numpy as np
import psutil
import pytest

import cluster.progress as progress_module
import pipelines.steps.context as context_module
from cluster.errors import InvalidClusterOptionError, WorkersLostError
from cluster.options import ClusterOptions
from pipelines.planning import ClusterSize
from pipelines.steps.context import WORKER_MODULES, JobContext, step_context
from pipelines.steps.ingest import ingest
from storage.errors import StoreDamagedError
from storage.store import StoreLocation
from storage.video_array import open_video
from tests.helpers import REPO, python_words, run_cli


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[ClusterOptions]:
    """Every call of the cluster's connect made through a job context."""
    opened: list[ClusterOptions] = []
    real = context_module.connect

    @contextmanager
    def counting(options: ClusterOptions, **kwargs: Any) -> Iterator[Any]:
        opened.append(options)
        with real(options, **kwargs) as client:
            yield client

    monkeypatch.setattr(context_module, "connect", counting)
    return opened


@pytest.mark.slow
def test_run_opens_exactly_one_client_for_all_of_its_steps(
    tmp_path: Path, make_video, capsys: pytest.CaptureFixture[str], connections: list[ClusterOptions]
) -> None:  # type: ignore[no-untyped-def]
    video, _ = make_video(n_frames=30)
    out = tmp_path / "out"
    status, _, err = run_cli(capsys, "run", str(video), "--out", str(out), "--rank", "3", "--quiet")
    assert status == 0, err
    assert len(connections) == 1
    assert (out / "report.json").is_file() and (out / "compare.mp4").is_file()
    status, _, err = run_cli(capsys, "run", str(video), "--out", str(out), "--rank", "3")
    assert status == 0, err
    assert len(connections) == 1, "a rerun with every step complete starts no cluster"
    assert "decompose: reused exact-k3, separate: skipped (complete), report: skipped" in err


def test_a_step_without_context_closes_the_one_it_made() -> None:
    with step_context(None) as own:
        assert isinstance(own, JobContext) and own.connections == 0
    given = JobContext(progress=False)
    with step_context(given) as same:
        assert same is given


def test_a_context_connects_lazily_and_once(connections: list[ClusterOptions], tmp_path: Path) -> None:
    messages: list[str] = []
    with JobContext(cluster=ClusterOptions(n_workers=1, threads_per_worker=1), log=messages.append) as job:
        assert connections == []
        first = job.client()
        assert job.client() is first and messages == []
        store = StoreLocation(url=str(tmp_path / "store.zarr"))
        assert job.computing_on(store) is first
        assert job.computing_on(store) is first
        assert job.connections == 1 and len(connections) == 1
    assert len(messages) == 1 and messages[0].startswith("computing on")


def _worker_modules(dask_worker: Any) -> list[str]:
    import sys

    return [name for name in WORKER_MODULES if name in sys.modules]


def test_warm_up_starts_the_cluster_early_and_client_takes_it(connections: list[ClusterOptions]) -> None:
    with JobContext(cluster=ClusterOptions(n_workers=1, threads_per_worker=1), progress=False) as job:
        job.warm_up()
        job.warm_up()  # once
        assert len(connections) == 1 and job.connections == 0  # started, not yet taken
        client = job.client()
        assert job.client() is client and job.connections == 1 and len(connections) == 1
        # the workers imported the tasks' modules as they started, before any task
        assert list(client.run(_worker_modules).values()) == [list(WORKER_MODULES)]
        assert client.submit(sum, [1, 2]).result() == 3


def test_a_warmed_up_cluster_nobody_used_is_closed_with_the_context() -> None:
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    with JobContext(cluster=ClusterOptions(n_workers=1, threads_per_worker=1), progress=False) as job:
        job.warm_up()
    after = {child.pid for child in psutil.Process().children(recursive=True) if child.is_running()}
    assert after <= before, "the warmed-up cluster's processes outlived the context"
    assert job.connections == 0


def test_a_failed_warm_up_is_raised_by_client() -> None:
    with JobContext(cluster=ClusterOptions(n_workers=0), progress=False) as job:
        job.warm_up()
        with pytest.raises(InvalidClusterOptionError, match="workers"):
            job.client()


def test_warm_up_leaves_an_existing_scheduler_alone(connections: list[ClusterOptions]) -> None:
    with JobContext(cluster=ClusterOptions(scheduler="tcp://127.0.0.1:9"), progress=False) as job:
        job.warm_up()  # connecting to a running scheduler is quick: nothing to start early
    assert connections == []


def _chunk_files(store: Path) -> list[Path]:
    return [path for path in (store / "video" / "c").rglob("*") if path.is_file()]


def test_frames_that_fit_are_read_once_and_held_for_every_later_pass(tmp_path: Path, make_video) -> None:  # type: ignore[no-untyped-def]
    video_path, frames = make_video(n_frames=30)
    store = tmp_path / "store.zarr"
    ingest([video_path], store=store, context=JobContext(progress=False))
    with JobContext(cluster=ClusterOptions(n_workers=1, threads_per_worker=2), progress=False) as job:
        video = open_video(store)
        held = job.frames_to_read(video)
        assert held.name == video.frames.name and held.chunks == video.frames.chunks
        assert job.frames_to_read(open_video(store)) is held, "the same video is found again"
        expected = np.asarray(held.compute())
        np.testing.assert_array_equal(expected, frames)
        for path in _chunk_files(store):
            path.unlink()  # a later pass that read the store again would fail
        np.testing.assert_array_equal(held[5:25].compute(), frames[5:25])
    with (
        JobContext(cluster=ClusterOptions(n_workers=1, threads_per_worker=2), progress=False) as job,
        pytest.raises(StoreDamagedError, match=r"missing|absent|chunk"),
    ):
        job.frames_to_read(open_video(store)).compute()  # a new context holds nothing


def test_frames_that_do_not_fit_are_read_from_the_store_at_each_pass(
    tmp_path: Path, make_video, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    video_path, _ = make_video(n_frames=30)
    store = tmp_path / "store.zarr"
    ingest([video_path], store=store, context=JobContext(progress=False))
    asked: list[tuple[int, ClusterSize]] = []

    def too_big(*, matrix_bytes: int, cluster: ClusterSize) -> bool:
        asked.append((matrix_bytes, cluster))
        return False

    monkeypatch.setattr(context_module, "keeps_in_memory", too_big)
    with JobContext(cluster=ClusterOptions(n_workers=1, threads_per_worker=2), progress=False) as job:
        video = open_video(store)
        assert job.frames_to_read(video) is video.frames
        assert asked == [
            (
                4 * video.frames.nbytes,
                ClusterSize(n_workers=1, threads=2, worker_memory_bytes=asked[0][1].worker_memory_bytes),
            )
        ]
        assert asked[0][1].worker_memory_bytes > 0


def _sleep_then(value: int, seconds: float) -> int:
    time.sleep(seconds)
    return value


def test_fetch_returns_values_and_gather_waits_for_futures() -> None:
    with JobContext(progress=False) as job:
        total, ones = job.fetch(da.arange(10, chunks=3).sum(), da.ones(4, chunks=2))
        assert int(total) == 45 and np.array_equal(ones, np.ones(4))
        futures = job.client().compute([da.full(3, 7, chunks=1).sum()])
        assert job.gather(futures) == [21]


def test_a_fetch_on_a_cluster_left_without_workers_ends_in_workers_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress_module, "WORKER_CHECK_S", 0.2)
    with (
        distributed.LocalCluster(
            n_workers=1, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=None
        ) as cluster,
        JobContext(
            cluster=ClusterOptions(scheduler=cluster.scheduler_address, workerless_timeout=1.0),
            progress=False,
        ) as job,
    ):
        job.client().wait_for_workers(1, timeout=30)
        cluster.scale(0)
        started = time.monotonic()
        with pytest.raises(WorkersLostError, match="none came back within 1 s"):
            job.fetch(dask.delayed(_sleep_then)(1, 30.0))
        assert time.monotonic() - started < 15


_GRAPH_BUILDING = re.compile(
    r"map_blocks|blockwise\(|delayed\(|from_delayed|HighLevelGraph|Task\(|\.store\(|to_zarr"
)


def test_the_worker_modules_cover_every_module_that_builds_task_graphs() -> None:
    # a module whose functions a task may carry, left out, is a module a remote worker
    # is not checked for, and an embedded worker imports at its first task
    builders = sorted(
        ".".join(path.relative_to(REPO).with_suffix("").parts)
        for package in ("pipelines", "storage")
        for path in (REPO / package).glob("*.py")
        if _GRAPH_BUILDING.search(path.read_text())
    )
    script = (
        "import importlib, sys\n"
        "from pipelines.steps.context import WORKER_MODULES\n"
        "for name in WORKER_MODULES: importlib.import_module(name)\n"
        "print(*sorted(sys.modules))"
    )
    loaded = set(python_words(script))
    assert "pipelines.gram_svd" in builders and "storage.derived" in builders
    assert [name for name in builders if name not in loaded] == []
