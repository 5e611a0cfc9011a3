"""A sum that does not add up is computed again once, then is the error: never written."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dask.system
import numpy as np
import pytest

import pipelines.fused_svd as fused_svd_module
import pipelines.steps.background as background_step
from pipelines.decompose import SvdParameters
from pipelines.steps.background import fit_background
from pipelines.steps.context import JobContext
from pipelines.steps.decompose import decompose
from pipelines.steps.recompute import ATTEMPTS, recomputed_if_inconsistent
from pipelines.synthetic import SceneSpec, write_scene
from storage.errors import InconsistentResultError
from storage.factor_lookup import list_factors
from storage.factors import open_factors
from storage.video_ingest import ingest_videos

SCENE = SceneSpec(width=64, height=48, n_frames=60, n_objects=2, seed=4)
RANDOMIZED = SvdParameters(rank=4, method="randomized", iteration="fused")


def _failing(times: int, then: Callable[..., Any]) -> Callable[..., Any]:
    """``then``, after raising InconsistentResultError on its first ``times`` calls."""
    calls = {"n": 0}

    def call(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= times:
            raise InconsistentResultError("the test's products added up 59 frames instead of 60")
        return then(*args, **kwargs)

    return call


@pytest.fixture(scope="module")
def source_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("recompute")
    video = folder / "scene.mp4"
    write_scene(SCENE, video)
    store = folder / "video.zarr"
    ingest_videos([video], store=store, progress=False)
    return store


@pytest.fixture
def store(source_store: Path, tmp_path: Path) -> Iterator[Path]:
    copy = tmp_path / "store.zarr"
    shutil.copytree(source_store, copy)
    yield copy


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded cluster of a two-core machine: one worker, in this process, whose tasks see patches."""
    monkeypatch.setattr(dask.system, "cpu_count", lambda: 2)


def _context(messages: list[str]) -> JobContext:
    return JobContext(progress=False, log=messages.append)


def test_a_second_attempt_is_made_once_and_said() -> None:
    messages: list[str] = []
    result = recomputed_if_inconsistent(_failing(1, lambda: 42), what="the test", say=messages.append)
    assert result == 42
    assert messages == ["the partial sums of the test did not add up (a worker failure?): computing it again"]


def test_the_last_attempts_inconsistency_is_the_error() -> None:
    messages: list[str] = []
    with pytest.raises(InconsistentResultError, match="instead of 60"):
        recomputed_if_inconsistent(_failing(ATTEMPTS, lambda: 42), what="the test", say=messages.append)
    assert len(messages) == ATTEMPTS - 1


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("not a sum")

    with pytest.raises(ValueError, match="not a sum"):
        recomputed_if_inconsistent(broken, what="the test", say=lambda _message: None)
    assert calls == [1]


@pytest.mark.usefixtures("two_cores")
def test_decompose_computes_again_after_an_inconsistent_sum(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages: list[str] = []
    with _context(messages) as job:
        decompose(store=store, parameters=RANDOMIZED, name="clean", context=job)
    clean = open_factors(store, "clean")

    monkeypatch.setattr(fused_svd_module, "checked_count", _failing(1, fused_svd_module.checked_count))
    messages.clear()
    with _context(messages) as job:
        summary = decompose(store=store, parameters=RANDOMIZED, name="again", context=job)
    assert any("1 worker in this process" in message for message in messages), messages
    assert any("the partial sums of the SVD did not add up" in message for message in messages), messages
    again = open_factors(store, "again")
    np.testing.assert_array_equal(again.s.compute(), clean.s.compute())  # same seed and chunks: same bits
    np.testing.assert_array_equal(again.Vt.compute(), clean.Vt.compute())
    assert summary.singular_values == [float(v) for v in clean.s.compute()]


@pytest.mark.usefixtures("two_cores")
def test_decompose_writes_nothing_when_every_attempt_is_inconsistent(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        fused_svd_module, "checked_count", _failing(10 * ATTEMPTS, fused_svd_module.checked_count)
    )
    messages: list[str] = []
    with _context(messages) as job, pytest.raises(InconsistentResultError, match="instead of 60"):
        decompose(store=store, parameters=RANDOMIZED, name="never", context=job)
    assert "never" not in [factors.name for factors in list_factors(store)]


@pytest.mark.usefixtures("two_cores")
def test_the_robust_fit_computes_again_after_counts_that_do_not_add_up(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages: list[str] = []
    with _context(messages) as job:
        clean = fit_background(store=store, model="robust", context=job)
    clean_u = clean.U.compute()

    monkeypatch.setattr(background_step, "median_in_windows", _failing(1, background_step.median_in_windows))
    messages.clear()
    with _context(messages) as job:
        again = fit_background(store=store, model="robust", force=True, context=job)
    assert any("the partial sums of the robust background did not add up" in m for m in messages), messages
    np.testing.assert_array_equal(again.U.compute(), clean_u)


@pytest.mark.usefixtures("two_cores")
def test_the_robust_fit_writes_nothing_when_every_attempt_is_inconsistent(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        background_step, "median_in_windows", _failing(10 * ATTEMPTS, background_step.median_in_windows)
    )
    with JobContext(progress=False) as job, pytest.raises(InconsistentResultError):
        fit_background(store=store, model="robust", context=job)
    assert "robust" not in [factors.name for factors in list_factors(store)]
