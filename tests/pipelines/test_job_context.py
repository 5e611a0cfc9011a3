"""The job context: one Client for every step of ``vidsvd run``, none when nothing is left to do."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import pipelines.steps.context as context_module
from cluster.options import ClusterOptions
from pipelines.steps.context import JobContext, step_context
from storage.store import StoreLocation
from tests.helpers import run_cli


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[ClusterOptions]:
    """Every call of the cluster's connect made through a job context."""
    opened: list[ClusterOptions] = []
    real = context_module.connect

    @contextmanager
    def counting(options: ClusterOptions) -> Iterator[Any]:
        opened.append(options)
        with real(options) as client:
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
    assert "decompose: reused randomized-k3, separate: skipped (complete), report: skipped" in err


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
