"""Workers of an existing scheduler that run another version of vidsvd are refused before any task.

A real `dask scheduler` and `dask worker` whose Python finds a copy of vidsvd with one
module changed first: the worker imports and unpickles everything, and would compute
with the changed code.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import cluster
import pipelines
import storage
from cluster.client import connect
from cluster.options import ClusterOptions
from storage.factor_lookup import list_factors
from tests.external_cluster import START_TIMEOUT_S, ExternalCluster
from tests.helpers import assert_one_line_error, run_cli

pytestmark = pytest.mark.timeout(180)


def _copy_of_vidsvd(folder: Path) -> Path:
    """This vidsvd's packages copied into ``folder``, with one kernel module changed."""
    for package in (cluster, pipelines, storage):
        source = Path(package.__file__).parent
        shutil.copytree(source, folder / source.name, ignore=shutil.ignore_patterns("__pycache__"))
    changed = folder / "pipelines" / "fused_svd.py"
    changed.write_text(changed.read_text() + "\n# another version of the kernels\n")
    return folder


@pytest.fixture
def other_version_worker(tmp_path: Path) -> Iterator[ExternalCluster]:
    other = _copy_of_vidsvd(tmp_path / "other-vidsvd")
    started = ExternalCluster(tmp_path / "cluster")
    started.folder.mkdir()
    try:
        started.start_scheduler()
        started.start_worker("worker", "600MiB", env={**os.environ, "PYTHONPATH": str(other)})
        with connect(ClusterOptions(scheduler=started.address)) as client:
            client.wait_for_workers(1, timeout=START_TIMEOUT_S)
        yield started
    finally:
        started.stop()


def test_a_worker_with_another_version_of_a_kernel_is_refused_before_any_task(
    other_version_worker: ExternalCluster,
    make_video,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    video, _ = make_video(n_frames=12)
    store = str(tmp_path / "clip.zarr")
    assert run_cli(capsys, "ingest", str(video), "--store", store, "--quiet")[0] == 0
    status, out, err = run_cli(
        capsys,
        "decompose", "--store", store, "--rank", "2", "--quiet",
        "--scheduler", other_version_worker.address,
    )  # fmt: skip
    assert status == 1 and out == ""
    assert_one_line_error(
        err,
        "1 of 1 dask workers (tcp://127.0.0.1:",
        "cannot run vidsvd's tasks as this machine would"
        " (pipelines.fused_svd: its source differs from this machine's)",
        "install the same vidsvd and libraries on every worker as on this machine",
    )
    assert list_factors(store) == []
