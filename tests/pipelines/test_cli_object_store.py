"""The whole pipeline on object storage, and workers that cannot reach the store.

A real S3-compatible server (moto's server mode) runs on 127.0.0.1; the commands run
through the command line with real dask workers: the embedded cluster's worker
processes, which inherit this process's environment (credentials and endpoint), and
`dask worker` processes of an external scheduler, which get their own.

Workers that "cannot see" a local store are workers of the external scheduler started
in their own mount namespace (``unshare --user --mount``) with an empty tmpfs mounted
over the folder that holds the store: to them the path does not exist, exactly as on
a machine without the shared filesystem.  That needs unprivileged user namespaces;
where the kernel forbids them the test is skipped and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cluster.client import connect, scheduler_workers
from cluster.options import ClusterOptions
from pipelines.cli import main
from pipelines.synthetic import SceneSpec, write_scene
from storage.derived import open_derived
from storage.factor_lookup import list_factors
from storage.factors import open_factors
from storage.store import store_exists, store_problem
from storage.video_array import open_video
from tests.external_cluster import ExternalCluster
from tests.helpers import assert_one_line_error, run_cli
from tests.s3_server import S3Server, running_s3_server

CLUSTER = ("--workers", "1", "--threads-per-worker", "2")
SCENE = SceneSpec(width=64, height=48, n_frames=60, n_objects=2, seed=0)
RANK = "4"
ERROR_WITHIN_S = 30.0
START_TIMEOUT_S = 60.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The server, and this process (and the clusters it starts) configured to use it."""
    with running_s3_server(tmp_path_factory.mktemp("aws-home")) as server, pytest.MonkeyPatch.context() as mp:
        server.use_in_process(mp)
        yield server
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()


@dataclass(frozen=True)
class Runs:
    video: Path
    truth: Path
    bucket: str
    local_store: Path
    local_out: Path
    url: str
    s3_out: Path


def _pipeline(video: Path, store: str, out: Path) -> None:
    assert main(["ingest", str(video), "--store", store, "--quiet"]) == 0
    assert main(["decompose", "--store", store, "--rank", RANK, "--quiet", *CLUSTER]) == 0
    assert main(["separate", "--store", store, "--out", str(out), "--foreground", "--quiet", *CLUSTER]) == 0
    assert main(["report", "--store", store, "--out", str(out), "--quiet", *CLUSTER]) == 0


@pytest.fixture(scope="module")
def runs(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """ingest, decompose, separate, report: once into a local store, once into s3://."""
    folder = tmp_path_factory.mktemp("object-store")
    video, truth = folder / "scene.mp4", folder / "truth"
    write_scene(SCENE, video, truth_dir=truth, truth_every=1)
    bucket = s3.create_bucket()
    runs = Runs(
        video=video,
        truth=truth,
        bucket=bucket,
        local_store=folder / "local.zarr",
        local_out=folder / "local-out",
        url=f"s3://{bucket}/scene.zarr",
        s3_out=folder / "s3-out",
    )
    _pipeline(video, str(runs.local_store), runs.local_out)
    _pipeline(video, runs.url, runs.s3_out)
    return runs


def _assert_same_up_to_sign(a: np.ndarray, b: np.ndarray, *, axis: int, rtol: float) -> None:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    signs = np.sign(np.sum(a64 * b64, axis=axis, keepdims=True))
    assert np.all(signs != 0)
    np.testing.assert_allclose(a64 * signs, b64, rtol=0, atol=rtol * np.max(np.abs(b64)))


def _assert_same_factors(url: str, local: Path, name: str) -> None:
    remote, reference = open_factors(url, name), open_factors(local, name)
    assert remote.attrs["video_fingerprint"] == reference.attrs["video_fingerprint"]
    np.testing.assert_allclose(remote.s.compute(), reference.s.compute(), rtol=1e-4)
    _assert_same_up_to_sign(remote.U.compute(), reference.U.compute(), axis=0, rtol=1e-4)
    _assert_same_up_to_sign(remote.Vt.compute(), reference.Vt.compute(), axis=1, rtol=1e-4)


def test_pipeline_on_s3_equals_the_local_one(runs: Runs) -> None:
    assert not (runs.s3_out / "store.zarr").exists()
    remote, local = open_video(runs.url), open_video(runs.local_store)
    assert remote.fingerprint == local.fingerprint
    np.testing.assert_array_equal(remote.frames.compute(), local.frames.compute())
    _assert_same_factors(runs.url, runs.local_store, f"exact-k{RANK}")

    fg_remote, fg_local = (open_derived(s, "foreground") for s in (runs.url, runs.local_store))
    assert fg_remote.record.threshold == pytest.approx(fg_local.record.threshold, abs=0.05)
    diff = np.abs(fg_remote.data.compute().astype(np.int32) - fg_local.data.compute())
    assert diff.max() <= 1  # float rounding of the background may move a pixel by one grey level
    masks_remote, masks_local = (
        open_derived(s, "masks").data.compute() for s in (runs.url, runs.local_store)
    )
    assert np.mean(masks_remote != masks_local) < 1e-3

    for name in ("background.png", "foreground.mp4", "compare.mp4", "report.html", "report.json"):
        assert (runs.s3_out / name).is_file(), name
    backgrounds = [
        np.asarray(Image.open(out / "background.png"), np.int32) for out in (runs.s3_out, runs.local_out)
    ]
    assert np.abs(backgrounds[0] - backgrounds[1]).max() <= 1
    reports = [json.loads((out / "report.json").read_text()) for out in (runs.s3_out, runs.local_out)]
    assert [r["rank"] for r in reports[0]["ranks"]] == [r["rank"] for r in reports[1]["ranks"]] == [1, 2, 4]
    for row, reference in zip(reports[0]["ranks"], reports[1]["ranks"], strict=True):
        assert row["compression_fraction"] == reference["compression_fraction"]
        assert row["relative_error"] == pytest.approx(reference["relative_error"], rel=1e-4)
    # the same chunks; the array's metadata differs by its recorded wall time
    assert reports[0]["video"]["stored_bytes"] == pytest.approx(reports[1]["video"]["stored_bytes"], abs=32)


def test_evaluate_and_apply_read_an_s3_store(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scores = {}
    for store in (runs.url, str(runs.local_store)):
        code, stdout, stderr = run_cli(
            capsys, "evaluate", "--store", store, "--truth", str(runs.truth), "--json"
        )
        assert code == 0, stderr
        scores[store] = json.loads(stdout)["vidsvd"]
    assert scores[runs.url]["f_measure"] > 0.9
    assert scores[runs.url]["f_measure"] == pytest.approx(
        scores[str(runs.local_store)]["f_measure"], abs=1e-3
    )

    code, _, stderr = run_cli(
        capsys, "apply", str(runs.video), "--store", runs.url, "--out", str(tmp_path / "apply"), "--quiet"
    )
    assert code == 0, stderr
    assert (tmp_path / "apply" / "foreground.mp4").stat().st_size > 0


def test_run_puts_its_store_at_the_url(
    s3: S3Server, runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, url = tmp_path / "job", f"s3://{runs.bucket}/job.zarr"
    argv = ("run", str(runs.video), "--out", str(out), "--store", url, "--rank", RANK, *CLUSTER)
    code, _, stderr = run_cli(capsys, *argv, "--quiet")
    assert code == 0, stderr
    assert (out / "report.html").is_file() and (out / "compare.mp4").is_file()
    assert not (out / "store.zarr").exists()
    assert open_video(url).fingerprint == open_video(runs.local_store).fingerprint
    _assert_same_factors(url, runs.local_store, f"exact-k{RANK}")

    code, _, stderr = run_cli(capsys, *argv)
    assert code == 0, stderr
    assert "ingest: skipped (complete), decompose: reused exact-k4, separate: skipped (complete)" in stderr


def test_embedded_workers_inherit_the_credentials_and_endpoint(s3: S3Server, runs: Runs) -> None:
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
    with connect(ClusterOptions(n_workers=1, threads_per_worker=1, dashboard=False)) as client:
        seen = client.run(lambda: {name: os.environ.get(name) for name in names})
        problems = client.run(store_problem, runs.url)
    assert list(seen.values()) == [{name: os.environ[name] for name in names}]
    assert seen[next(iter(seen))]["AWS_ENDPOINT_URL"] == s3.endpoint
    assert list(problems.values()) == [None]


# --------------------------------------------------------------------------- external scheduler


def _unshare_works(folder: Path) -> bool:
    """True when this user may mount a tmpfs in a new user and mount namespace."""
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "--",
            "mount",
            "-t",
            "tmpfs",
            "probe",
            str(folder),
        ],
        capture_output=True,
        timeout=30,
    )
    return done.returncode == 0


def _hiding(folder: Path) -> list[str]:
    """A command prefix that runs the rest with an empty tmpfs mounted over ``folder``."""
    script = 'mount -t tmpfs vidsvd-hidden "$1" && shift && exec "$@"'
    return ["unshare", "--user", "--map-root-user", "--mount", "--", "sh", "-c", script, "sh", str(folder)]


@dataclass
class MixedCluster:
    """An external scheduler with two workers: ``sees`` has this machine's view and credentials;
    ``blind`` has no object-storage credentials and, where namespaces allow, not ``hidden`` either."""

    cluster: ExternalCluster
    hidden: Path
    hides_folder: bool
    addresses: dict[str, str]


@pytest.fixture(scope="module")
def mixed_cluster(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MixedCluster]:
    hidden = tmp_path_factory.mktemp("not-shared")
    hides_folder = _unshare_works(tmp_path_factory.mktemp("probe"))
    cluster = ExternalCluster(tmp_path_factory.mktemp("mixed-cluster"))
    try:
        cluster.start_scheduler()
        cluster.start_worker("sees", "500MiB", "--name", "sees", env=s3.env())
        cluster.start_worker(
            "blind",
            "500MiB",
            "--name",
            "blind",
            env=s3.env(credentials=False),
            wrapper=_hiding(hidden) if hides_folder else (),
        )
        with connect(ClusterOptions(scheduler=cluster.address)) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
            workers = scheduler_workers(client)
        yield MixedCluster(
            cluster=cluster,
            hidden=hidden,
            hides_folder=hides_folder,
            addresses={info["name"]: address for address, info in workers.items()},
        )
    finally:
        cluster.stop()


def _timed(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, float]:
    started = time.monotonic()
    code, _, stderr = run_cli(capsys, *argv)
    return code, stderr, time.monotonic() - started


@pytest.mark.timeout(180)
def test_workers_that_cannot_see_a_local_store_are_named(
    runs: Runs, mixed_cluster: MixedCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    if not mixed_cluster.hides_folder:
        pytest.skip("this kernel forbids unprivileged mount namespaces (unshare --user --mount)")
    store = mixed_cluster.hidden / "scene.zarr"
    assert main(["ingest", str(runs.video), "--store", str(store), "--quiet"]) == 0
    code, stderr, seconds = _timed(
        capsys,
        "decompose",
        "--store",
        str(store),
        "--rank",
        RANK,
        "--scheduler",
        mixed_cluster.cluster.address,
    )
    assert code == 1
    assert_one_line_error(
        stderr,
        f"1 of 2 dask workers ({mixed_cluster.addresses['blind']}) cannot see the store {store}",
        "it does not exist there",
        "a filesystem every worker mounts at the same path",
        "--store s3://",
    )
    assert mixed_cluster.addresses["sees"] not in stderr
    assert seconds < ERROR_WITHIN_S
    assert open_video(store).n_frames == SCENE.n_frames
    assert list_factors(store) == []


@pytest.mark.timeout(180)
def test_run_checks_the_workers_before_ingesting(
    runs: Runs, mixed_cluster: MixedCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    if not mixed_cluster.hides_folder:
        pytest.skip("this kernel forbids unprivileged mount namespaces (unshare --user --mount)")
    out = mixed_cluster.hidden / "job"
    code, stderr, seconds = _timed(
        capsys,
        "run",
        str(runs.video),
        "--out",
        str(out),
        "--quiet",
        "--scheduler",
        mixed_cluster.cluster.address,
    )
    assert code == 1
    assert_one_line_error(
        stderr,
        f"({mixed_cluster.addresses['blind']}) cannot see the store {out / 'store.zarr'}",
        f"its folder {out} does not exist there",
    )
    assert seconds < ERROR_WITHIN_S
    assert not store_exists(out / "store.zarr")


@pytest.mark.timeout(180)
def test_workers_without_credentials_are_named(
    runs: Runs, mixed_cluster: MixedCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stderr, seconds = _timed(
        capsys, "decompose", "--store", runs.url, "--rank", "2", "--seed", "5",
        "--scheduler", mixed_cluster.cluster.address,
    )  # fmt: skip
    assert code == 1
    assert_one_line_error(
        stderr,
        f"1 of 2 dask workers ({mixed_cluster.addresses['blind']}) cannot use the store {runs.url}",
        "no credentials for",
        "AWS_ACCESS_KEY_ID",
    )
    assert seconds < ERROR_WITHIN_S
    # the seed asked for randomized factors: none were written beside the pipeline's exact ones
    assert [f.name for f in list_factors(runs.url) if f.method in ("randomized", "exact")] == [
        f"exact-k{RANK}"
    ]


@pytest.mark.timeout(240)
def test_external_workers_write_to_s3_with_their_own_credentials(
    s3: S3Server, runs: Runs, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"s3://{runs.bucket}/external.zarr"
    assert main(["ingest", str(runs.video), "--store", url, "--quiet"]) == 0
    cluster = ExternalCluster(tmp_path_factory.mktemp("s3-cluster"))
    try:
        cluster.start_scheduler()
        for name in ("worker-a", "worker-b"):
            cluster.start_worker(name, "500MiB", env=s3.env())
        with connect(ClusterOptions(scheduler=cluster.address)) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
        # the randomized passes: enough tasks that both workers read and write (the Gram
        # of this short clip is a few tasks, which the scheduler may give to one worker)
        randomized = ("--rank", RANK, "--method", "randomized", "--quiet")
        code, _, stderr = run_cli(
            capsys, "decompose", "--store", url, *randomized, "--scheduler", cluster.address
        )
        assert code == 0, stderr
        with connect(ClusterOptions(scheduler=cluster.address)) as client:
            counters = client.run(lambda dask_worker: dask_worker.state.transition_counter)
    finally:
        cluster.stop()
    assert len(counters) == 2 and all(count > 0 for count in counters.values()), counters
    local = tmp_path_factory.mktemp("local-randomized") / "store.zarr"
    shutil.copytree(runs.local_store, local)
    assert main(["decompose", "--store", str(local), *randomized, *CLUSTER]) == 0
    _assert_same_factors(url, local, f"randomized-k{RANK}")
