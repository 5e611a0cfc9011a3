"""`vidsvd run` (the main job and its reruns), `vidsvd demo`, and decompose and run on an external cluster.

The external cluster is real `dask scheduler` and `dask worker` processes on 127.0.0.1,
started as tests/cluster/test_cluster_external.py starts them (the small helper is
copied here: pytest's import mode does not make that module importable from this one).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zarr

from cluster.client import connect
from cluster.options import ClusterOptions
from pipelines.cli import main
from pipelines.separate import background_frames, foreground_frames, to_storage_foreground
from pipelines.steps.separate import CLEANUP
from pipelines.synthetic import SceneSpec, write_scene
from storage.derived import open_derived
from storage.factors import open_factors
from storage.video_array import open_video
from storage.video_decoder import DecodeOptions, decode_blocks, probe_video
from storage.video_encoder import write_video
from tests.cli_process import own_messages
from tests.external_cluster import ExternalCluster
from tests.helpers import assert_one_line_error, run_cli, tree_digest

CLUSTER = ("--workers", "1", "--threads-per-worker", "2")
SCENE = SceneSpec(width=64, height=48, n_frames=120, n_objects=2, seed=0)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return run_cli(capsys, *argv)


def _frame_count(path: Path) -> tuple[int, int, int]:
    info = probe_video(path)
    blocks = decode_blocks(info, DecodeOptions(width=info.width, height=info.height), block_frames=64)
    frames = np.concatenate(list(blocks))
    return frames.shape  # type: ignore[return-value]


def _steps(stderr: str) -> str:
    """The last line of a run: ``vidsvd: ingest: ..., decompose: ..., ...; open ...``."""
    (line,) = [line for line in stderr.splitlines() if "ingest: " in line and "report: " in line]
    return line


@dataclass(frozen=True)
class FirstRun:
    video: Path
    truth: Path
    out: Path


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> FirstRun:
    """``vidsvd run VIDEO --out DIR --rank 5 --quiet`` once; copy DIR before running again."""
    folder = tmp_path_factory.mktemp("run")
    video, truth, out = folder / "scene.mp4", folder / "truth", folder / "job"
    write_scene(SCENE, video, truth_dir=truth, truth_every=1)
    assert main(["run", str(video), "--out", str(out), "--rank", "5", "--quiet", *CLUSTER]) == 0
    return FirstRun(video, truth, out)


@pytest.fixture
def job(first_run: FirstRun, tmp_path: Path) -> Path:
    copy = tmp_path / "job"
    shutil.copytree(first_run.out, copy)
    return copy


def test_a_default_run_prints_only_its_own_messages(first_run: FirstRun, tmp_path: Path) -> None:
    """As a user runs it, in its own process: the embedded scheduler's warnings would show here."""
    own_messages(["run", str(first_run.video), "--out", str(tmp_path / "job"), "--rank", "5"], timeout_s=240)


def test_run_writes_the_store_report_and_videos(
    first_run: FirstRun, capsys: pytest.CaptureFixture[str]
) -> None:
    out = first_run.out
    store = out / "store.zarr"
    video = open_video(store)
    assert video.frames.shape == (SCENE.n_frames, SCENE.height, SCENE.width)
    factors = open_factors(store, "exact-k5", expected_fingerprint=video.fingerprint)
    assert factors.rank == 5 and factors.attrs["complete"] is True
    masks = open_derived(store, "masks")
    assert masks.record.factors == "robust" and masks.record.rank == 1  # the default model
    assert open_factors(store, "robust").method == "robust"
    for name in ("report.html", "report.json", "compare.mp4", "foreground.mp4", "background.png"):
        assert (out / name).is_file(), name
    assert _frame_count(out / "compare.mp4") == (SCENE.n_frames, SCENE.height, 4 * SCENE.width)
    report = json.loads((out / "report.json").read_text())
    assert [row["rank"] for row in report["ranks"]] == [1, 2, 5]
    assert report["factors"]["name"] == "exact-k5"
    assert "data:image/png;base64" in (out / "report.html").read_text()
    # the separation section: how the masks were made, and the activity timeline
    separation = report["separation"]
    assert separation["background"] == "robust" and separation["rank"] == 1
    assert separation["threshold"] == pytest.approx(masks.record.threshold)
    assert separation["threshold_rule"].startswith("auto:")
    assert masks.record.pixel_noise_factor == 3.0  # raised per pixel where the video varies
    stored_masks = masks.data.compute()
    fraction = (stored_masks > 0).mean(axis=(1, 2))
    assert separation["mean_foreground_fraction"] == pytest.approx(fraction.mean())
    share = (stored_masks > 0).mean(axis=0)
    assert separation["mostly_foreground_pixels"] == pytest.approx(float(np.mean(share > 0.9)))
    assert "warning" not in separation  # walkers pass: the ground is seen everywhere
    assert "Where the foreground is" in (out / "report.html").read_text()
    busiest = [row["frame"] for row in separation["busiest_frames"]]
    assert busiest and max(fraction[busiest]) == fraction.max()
    timeline = (out / "activity.csv").read_text().splitlines()
    assert timeline[0] == "frame,time_s,foreground_fraction" and len(timeline) == SCENE.n_frames + 1
    last = timeline[-1].split(",")
    assert int(last[0]) == SCENE.n_frames - 1
    assert float(last[2]) == pytest.approx(fraction[-1], abs=1e-6)
    timings = report["timings"]
    assert timings["separate_s"] > 0 and timings["encode_s"] > 0
    # the robust background's fit, as the factors recorded it: a step of its own
    robust = open_factors(store, "robust", expected_fingerprint=video.fingerprint)
    assert timings["fit_s"] == robust.wall_time_s and robust.wall_time_s > 0
    steps = ("ingest_s", "decompose_s", "fit_s", "separate_s", "encode_s", "report_s")
    assert timings["total_s"] == pytest.approx(sum(timings[step] for step in steps), abs=0.01)
    # every array's bytes; the foreground is not stored by default
    arrays = {row["array"]: row["bytes"] for row in report["store"]["arrays"]}
    assert {"video", "masks", "factors/exact-k5/U", "factors/robust/U"} <= arrays.keys()
    assert "foreground" not in arrays and not (store / "foreground").exists()
    on_disk = sum(p.stat().st_size for p in (store / "video").rglob("*") if p.is_file())
    assert arrays["video"] == on_disk
    assert report["store"]["bytes"] == sum(arrays.values())
    page = (out / "report.html").read_text()
    assert "<h2>Store</h2>" in page
    assert "<h2>Separation</h2>" in page and "The busiest frames and their masks" in page

    code, stdout, _ = _run(
        capsys, "evaluate", "--store", str(store), "--truth", str(first_run.truth), "--json"
    )
    assert code == 0
    assert json.loads(stdout)["vidsvd"]["f_measure"] > 0.9


def test_rerun_skips_what_is_complete(
    first_run: FirstRun, job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = job / "store.zarr"
    before = tree_digest(store)
    compare_mtime = (job / "compare.mp4").stat().st_mtime_ns
    code, _, stderr = _run(capsys, "run", str(first_run.video), "--out", str(job), "--rank", "5", *CLUSTER)
    assert code == 0
    steps = _steps(stderr)
    assert "ingest: skipped (complete)" in steps
    assert "decompose: reused exact-k5" in steps
    assert "separate: skipped (complete)" in steps
    assert re.search(rf"; \d+\.\d s in all; open {re.escape(str(job))}/report\.html and ", steps), steps
    assert "reusing factors 'exact-k5'" in stderr
    assert tree_digest(store) == before
    assert (job / "compare.mp4").stat().st_mtime_ns == compare_mtime


def test_rerun_after_deleting_compare_redoes_separate(
    first_run: FirstRun, job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = job / "store.zarr"
    video_and_factors = {name: tree_digest(store / name) for name in ("video", "factors")}
    (job / "compare.mp4").unlink()
    code, _, stderr = _run(capsys, "run", str(first_run.video), "--out", str(job), "--rank", "5", *CLUSTER)
    assert code == 0
    steps = _steps(stderr)
    assert "ingest: skipped (complete)" in steps
    assert "decompose: reused exact-k5" in steps
    assert "separate: done" in steps
    assert {name: tree_digest(store / name) for name in video_and_factors} == video_and_factors
    assert _frame_count(job / "compare.mp4") == (SCENE.n_frames, SCENE.height, 4 * SCENE.width)
    assert open_derived(store, "masks").record.complete is True


def test_videos_of_an_earlier_separation_are_made_again(
    first_run: FirstRun, job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a separation killed between its masks and its videos leaves: the folder's record is the
    previous separation's (another factors_id), so the videos there are not of the stored masks."""
    shown = json.loads((job / "separation.json").read_text())
    (job / "separation.json").write_text(json.dumps({**shown, "factors_id": "an-earlier-separation"}))
    code, _, stderr = _run(capsys, "run", str(first_run.video), "--out", str(job), "--rank", "5", *CLUSTER)
    assert code == 0, stderr
    assert "separate: done" in _steps(stderr)
    again = json.loads((job / "separation.json").read_text())
    assert again["factors_id"] == open_derived(job / "store.zarr", "masks").record.factors_id


def test_run_without_videos_then_with_them(
    first_run: FirstRun, job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--no-videos keeps the videos of the same separation; a separation made without them is
    made again when a later run wants them."""
    argv = ("run", str(first_run.video), "--out", str(job), "--rank", "5", *CLUSTER)
    code, _, stderr = _run(capsys, *argv, "--no-videos")
    assert code == 0, stderr
    assert "separate: skipped" in _steps(stderr)  # the folder shows this separation, videos and all
    assert (job / "compare.mp4").exists()
    code, _, stderr = _run(capsys, *argv, "--no-videos", "--threshold", "30")
    assert code == 0, stderr
    assert "separate: done" in _steps(stderr)
    assert not (job / "compare.mp4").exists() and not list(job.glob("frame-*.png"))
    assert "compare.mp4" not in stderr.splitlines()[-1]  # the closing line names what exists
    code, _, stderr = _run(capsys, *argv, "--threshold", "30")
    assert code == 0, stderr
    assert "separate: done" in _steps(stderr)
    assert (job / "compare.mp4").exists()
    assert open_derived(job / "store.zarr", "masks").record.pixel_noise_factor == 0.0  # as given
    code, _, stderr = _run(capsys, *argv, "--no-videos", "--masks-video")
    assert code == 2
    assert_one_line_error(stderr, "--masks-video", "--no-videos")
    # masks of a given threshold are not what the auto threshold asks for: separated again
    code, _, stderr = _run(capsys, *argv)
    assert code == 0, stderr
    assert "separate: done" in _steps(stderr)
    assert open_derived(job / "store.zarr", "masks").record.threshold_rule.startswith("auto:")


def test_rerun_with_nothing_to_do_skips_the_report_too(
    first_run: FirstRun, job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_mtime = (job / "report.html").stat().st_mtime_ns
    code, _, stderr = _run(capsys, "run", str(first_run.video), "--out", str(job), "--rank", "5", *CLUSTER)
    assert code == 0
    assert "report: skipped" in _steps(stderr)
    assert (job / "report.html").stat().st_mtime_ns == report_mtime


def test_run_refuses_a_store_made_from_other_input(
    first_run: FirstRun, job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another video, or the same one at another rate or size, never reuses the store."""
    store = job / "store.zarr"
    before = tree_digest(store)
    other = tmp_path / "other.mp4"
    write_scene(SceneSpec(width=64, height=48, n_frames=120, n_objects=2, seed=1), other)
    for argv, fragment in [
        ((str(other),), "it holds scene.mp4, not other.mp4"),
        ((str(first_run.video), "--fps", "5"), "not --fps 5"),
        ((str(first_run.video), "--scale", "0.5"), "its frames are 64x48, not 32x24"),
    ]:
        code, _, stderr = _run(capsys, "run", *argv, "--out", str(job), "--rank", "5", "--quiet", *CLUSTER)
        assert code == 1
        assert_one_line_error(
            stderr, "holds another video than this job asks for", fragment, "another --out", "--overwrite"
        )
    assert tree_digest(store) == before
    # the way out the message names: --overwrite starts again from the other video
    code, _, stderr = _run(
        capsys, "run", str(other), "--out", str(job), "--rank", "5", "--overwrite", *CLUSTER
    )
    assert code == 0, stderr
    assert "ingest: done (--overwrite)" in _steps(stderr)
    assert open_video(store).sources[0].path.endswith("other.mp4")


def _flags_named(message: str) -> set[str]:
    return set(re.findall(r"(--[a-z][a-z-]*)", message))


def test_every_way_out_run_names_is_a_flag_of_run(
    first_run: FirstRun, job: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a failed run, a rerun with other options, or other SVD parameters: run's own flags."""
    code, run_help, _ = _run(capsys, "run", "--help")
    assert code == 0
    run_flags = _flags_named(run_help)
    out = tmp_path / "short"
    # a frame rate too low for the clip fails inside the ingest and leaves it interrupted
    too_slow = ("--fps", "0.01", "--rank", "1", "--quiet")
    code, _, stderr = _run(capsys, "run", str(first_run.video), "--out", str(out), *too_slow)
    assert code == 1
    assert_one_line_error(stderr, "gives no frame at --fps 0.01", "an --fps of at least")
    code, _, stderr = _run(capsys, "run", str(first_run.video), "--out", str(out), "--rank", "5", "--quiet")
    assert code == 1
    assert_one_line_error(stderr, "holds an interrupted ingest of other videos or options", "--overwrite")
    assert _flags_named(stderr) <= run_flags, stderr
    code, _, stderr = _run(
        capsys, "run", str(first_run.video), "--out", str(out), "--rank", "5", "--overwrite", *CLUSTER
    )
    assert code == 0, stderr

    # other SVD parameters under the default name: --force recomputes, --name keeps both
    # (a seed asks for the randomized method: first its factors of another seed)
    seeded = ("run", str(first_run.video), "--out", str(job), "--rank", "5", "--seed", "5", *CLUSTER)
    code, _, stderr = _run(capsys, *seeded[:-4], "--seed", "4", "--quiet", *CLUSTER)
    assert code == 0, stderr
    code, _, stderr = _run(
        capsys, "run", str(first_run.video), "--out", str(job), "--rank", "5", "--seed", "5"
    )
    assert code == 1
    assert_one_line_error(stderr, "factors 'randomized-k5' already exist", "--force", "--name")
    assert _flags_named(stderr) <= run_flags, stderr
    old = open_factors(job / "store.zarr", "randomized-k5").factors_id
    code, _, stderr = _run(capsys, *seeded, "--force")
    assert code == 0, stderr
    assert "decompose: done (randomized-k5)" in _steps(stderr) and "report: done" in _steps(stderr)
    assert open_factors(job / "store.zarr", "randomized-k5").factors_id != old
    code, _, stderr = _run(capsys, *seeded[:-4], "--seed", "6", "--name", "seed6", *CLUSTER)
    assert code == 0, stderr
    assert "decompose: done (seed6)" in _steps(stderr)
    assert json.loads((job / "report.json").read_text())["factors"]["name"] == "seed6"


def test_factors_replaced_under_the_same_name_redo_separate_and_report(
    first_run: FirstRun, job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = job / "store.zarr"
    old = open_factors(store, "exact-k5").factors_id
    code, _, stderr = _run(
        capsys, "decompose", "--store", str(store), "--rank", "5", "--force", "--quiet", *CLUSTER,
    )  # fmt: skip
    assert code == 0, stderr
    new = open_factors(store, "exact-k5").factors_id
    assert new and new != old
    svd_run = ["run", str(first_run.video), "--out", str(job), "--rank", "5", "--model", "svd", *CLUSTER]
    code, _, stderr = _run(capsys, *svd_run)
    assert code == 0, stderr
    steps = _steps(stderr)
    assert "separate: done" in steps and "report: done" in steps
    assert open_derived(store, "masks").record.factors_id == new
    assert json.loads((job / "report.json").read_text())["factors"]["factors_id"] == new

    # the model is part of what a skip checks: svd masks do not stand for robust ones
    robust_run = ["run", str(first_run.video), "--out", str(job), "--rank", "5", *CLUSTER]
    code, _, stderr = _run(capsys, *robust_run)
    assert code == 0, stderr
    assert "separate: done" in _steps(stderr)
    record = open_derived(store, "masks").record
    assert record.factors == "robust" and record.factors_id == open_factors(store, "robust").factors_id
    code, _, stderr = _run(capsys, *robust_run)
    assert code == 0, stderr
    assert "separate: skipped (complete)" in _steps(stderr)

    # and so is the clean-up: masks cleaned another way (as an older version did) are made again
    zarr.open_array(str(store / "masks"), mode="r+").attrs.update({"cleanup": "median 3x3"})
    code, _, stderr = _run(capsys, *robust_run)
    assert code == 0, stderr
    assert "separate: done" in _steps(stderr)
    assert open_derived(store, "masks").record.cleanup == CLEANUP


def test_run_bad_inputs_are_one_line(
    first_run: FirstRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "job"
    code, _, stderr = _run(capsys, "run", str(tmp_path / "missing.mp4"), "--out", str(out), "--quiet")
    assert code == 1
    assert_one_line_error(stderr, "missing.mp4")
    assert not out.exists()
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    code, _, stderr = _run(capsys, "run", str(first_run.video), "--out", str(a_file), "--quiet")
    assert code == 1
    assert_one_line_error(stderr, f"the output folder {a_file} is a file", "choose another --out")
    # an --out that cannot be created (here below a file): the message names it, and --out
    below_a_file = a_file / "job"
    code, _, stderr = _run(capsys, "run", str(first_run.video), "--out", str(below_a_file), "--quiet")
    assert code == 1
    assert_one_line_error(stderr, f"cannot create the folder {below_a_file}", "--out")
    code, _, stderr = _run(capsys, "run", str(first_run.video), "--out", str(out), "--rank", "0", "--quiet")
    assert code == 2
    assert_one_line_error(stderr, "--rank")
    assert not out.exists()
    # a rank beyond the frames the header announces is refused before the ingest
    code, _, stderr = _run(
        capsys, "run", str(first_run.video), "--out", str(out), "--rank", "500", "--quiet", *CLUSTER
    )
    assert code == 2
    assert_one_line_error(stderr, "--rank 500 needs at least 500 frames", f"about {SCENE.n_frames}")
    assert not out.exists()
    # within the header's margin it is known once the video is stored: the ingest is kept
    rank = SCENE.n_frames + 2
    code, _, stderr = _run(
        capsys, "run", str(first_run.video), "--out", str(out), "--rank", str(rank), "--quiet", *CLUSTER
    )
    assert code == 2
    assert_one_line_error(stderr, "--rank", f"= {SCENE.n_frames}", str(rank))
    assert open_video(out / "store.zarr").n_frames == SCENE.n_frames
    assert not (out / "store.zarr" / "factors").exists()


def test_a_video_shorter_than_the_default_rank_runs_at_its_frame_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No --rank: a 6-frame video gets rank 6 factors, not an error asking for --rank 6."""
    video, out = tmp_path / "short.mp4", tmp_path / "job"
    write_scene(SceneSpec(width=64, height=48, n_frames=6, n_objects=1, seed=1), video)
    code, _, stderr = _run(capsys, "run", str(video), "--out", str(out), "--no-videos", *CLUSTER)
    assert code == 0, stderr
    assert "the video has 6 frames: the SVD's rank is 6, not 10" in stderr
    factors = open_factors(out / "store.zarr", "exact-k6")
    assert factors.rank == 6
    assert factors.s.shape == (6,)
    assert "separate: done" in _steps(stderr)
    # a rank the user asks for is still refused when the video is too short for it
    code, _, stderr = _run(
        capsys, "run", str(video), "--out", str(tmp_path / "asked"), "--rank", "10", *CLUSTER
    )
    assert code == 2
    assert_one_line_error(stderr, "--rank 10 needs at least 10 frames", "about 6")


@pytest.mark.slow
def test_demo_scores_its_synthetic_scene(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    code, stdout, stderr = _run(capsys, "demo", "--out", str(out), "--quiet", *CLUSTER)
    assert (code, stderr) == (0, "")
    header, row = stdout.strip().splitlines()
    assert header.split()[0] == "method" and header.split()[-1] == "f_measure"
    assert row.split()[0] == "vidsvd"
    f_measure = float(row.split()[-1])
    assert f_measure >= 0.95
    scores = json.loads((out / "scores.json").read_text())
    assert scores["vidsvd"]["f_measure"] == pytest.approx(f_measure, abs=1e-4)
    for name in ("report.html", "compare.mp4", "background.png", "store.zarr"):
        assert (out / name).exists(), name


# --------------------------------------------------------------------------- external cluster

START_TIMEOUT_S = 60.0


@pytest.fixture
def tcp_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExternalCluster]:
    cluster = ExternalCluster(tmp_path_factory.mktemp("tcp-cluster"))
    try:
        cluster.start_scheduler()
        cluster.start_worker("worker-a", "500MiB")
        cluster.start_worker("worker-b", "500MiB")
        with connect(ClusterOptions(scheduler=cluster.address)) as client:
            client.wait_for_workers(2, timeout=START_TIMEOUT_S)
        yield cluster
    finally:
        cluster.stop()


def _assert_same_up_to_sign(a: np.ndarray, b: np.ndarray, *, axis: int, rtol: float) -> None:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    signs = np.sign(np.sum(a64 * b64, axis=axis, keepdims=True))
    assert np.all(signs != 0)
    np.testing.assert_allclose(a64 * signs, b64, rtol=0, atol=rtol * np.max(np.abs(b64)))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_decompose_on_an_external_cluster_equals_the_embedded_one(
    first_run: FirstRun, tcp_cluster: ExternalCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    embedded, external = tmp_path / "embedded.zarr", tmp_path / "external.zarr"
    for store in (embedded, external):
        assert main(["ingest", str(first_run.video), "--store", str(store), "--quiet"]) == 0
    assert main(["decompose", "--store", str(embedded), "--rank", "5", "--seed", "3", "--quiet"]) == 0
    code, _, stderr = _run(
        capsys, "decompose", "--store", str(external), "--rank", "5", "--seed", "3",
        "--scheduler", tcp_cluster.address,
    )  # fmt: skip
    assert code == 0, stderr
    assert f"computing on dask scheduler {tcp_cluster.address}: 2 workers" in stderr
    assert "dashboard: http://127.0.0.1:" in stderr

    reference = open_factors(embedded, "randomized-k5")
    remote = open_factors(external, "randomized-k5")
    assert remote.attrs["cluster"].startswith(f"dask scheduler {tcp_cluster.address}: 2 workers")
    assert remote.attrs["video_fingerprint"] == reference.attrs["video_fingerprint"]
    u, s, vt = (np.asarray(a.compute()) for a in (remote.U, remote.s, remote.Vt))
    u_ref, s_ref, vt_ref = (np.asarray(a.compute()) for a in (reference.U, reference.s, reference.Vt))
    np.testing.assert_allclose(s, s_ref, rtol=1e-4)
    _assert_same_up_to_sign(u, u_ref, axis=0, rtol=1e-4)
    _assert_same_up_to_sign(vt, vt_ref, axis=1, rtol=1e-4)
    # the external workers did the work, and the cluster outlives the command
    assert all(p.poll() is None for p in tcp_cluster.processes)
    with connect(ClusterOptions(scheduler=tcp_cluster.address)) as client:
        counters = client.run(lambda dask_worker: dask_worker.state.transition_counter)
    assert len(counters) == 2 and sum(counters.values()) > 100, counters


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_on_an_external_cluster_equals_the_embedded_one(
    first_run: FirstRun, tcp_cluster: ExternalCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The main job end to end through ``--scheduler``: every output as the embedded run's."""
    out = tmp_path / "remote-job"
    code, _, stderr = _run(
        capsys,
        "run",
        str(first_run.video),
        "--out",
        str(out),
        "--rank",
        "5",
        "--scheduler",
        tcp_cluster.address,
        "--foreground",
    )
    assert code == 0, stderr
    assert f"computing on dask scheduler {tcp_cluster.address}: 2 workers" in stderr
    for name in ("report.html", "report.json", "foreground.mp4", "compare.mp4", "background.png"):
        assert (out / name).is_file(), name

    local, remote = first_run.out / "store.zarr", out / "store.zarr"
    # ingest: the same frames (the attributes differ only in the recorded wall time)
    assert open_video(remote).fingerprint == open_video(local).fingerprint
    np.testing.assert_array_equal(open_video(remote).frames.compute(), open_video(local).frames.compute())
    mine, theirs = open_factors(remote, "exact-k5"), open_factors(local, "exact-k5")
    assert mine.attrs["cluster"].startswith(f"dask scheduler {tcp_cluster.address}")
    np.testing.assert_allclose(np.asarray(mine.s.compute()), np.asarray(theirs.s.compute()), rtol=1e-4)
    for name, axis in (("U", 0), ("Vt", 1)):
        _assert_same_up_to_sign(
            np.asarray(getattr(mine, name).compute()), np.asarray(getattr(theirs, name).compute()),
            axis=axis, rtol=1e-4,
        )  # fmt: skip
    # separate: the stored foreground (--foreground) within one grey level (float32 rounding)
    # of the embedded run's background, masks alike
    video, robust = open_video(local), open_factors(local, "robust")
    background = background_frames(
        robust.U, robust.s, robust.Vt, rank=robust.rank, height=video.height, width=video.width
    )
    fg_local = np.asarray(
        to_storage_foreground(foreground_frames(video.frames, background)).compute(), np.int32
    )
    fg_remote = np.asarray(open_derived(remote, "foreground").data.compute(), dtype=np.int32)
    assert np.max(np.abs(fg_remote - fg_local)) <= 1
    masks_remote = np.asarray(open_derived(remote, "masks").data.compute())
    masks_local = np.asarray(open_derived(local, "masks").data.compute())
    assert np.mean(masks_remote != masks_local) < 1e-3
    # report: the same errors for every rank
    rows = {r["rank"]: r for r in json.loads((out / "report.json").read_text())["ranks"]}
    reference = {r["rank"]: r for r in json.loads((first_run.out / "report.json").read_text())["ranks"]}
    assert rows.keys() == reference.keys()
    for rank, row in rows.items():
        assert row["relative_error"] == pytest.approx(reference[rank]["relative_error"], rel=1e-4, abs=1e-6)
    # the external workers did the work, and the cluster outlives the command
    assert all(p.poll() is None for p in tcp_cluster.processes)


@pytest.mark.slow
def test_real_720p_store_holds_no_foreground_and_two_fifths_of_what_it_did(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The 720p clip's store took 393 MB (int16 foreground, zstd level 1); 146 MB now, the
    video at zstd level 3 103 MB of it (about 88 MB at level 5: ingest --zstd-level)."""
    video = shared_data / "overhead-pedestrians-720p" / "overhead_pedestrians_720p.avi"
    status, _, err = _run(capsys, "run", str(video), "--out", str(tmp_path / "out"), "--quiet")
    assert status == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    arrays = {entry["array"]: entry["bytes"] for entry in report["store"]["arrays"]}
    assert "foreground" not in arrays
    on_disk = sum(p.stat().st_size for p in (tmp_path / "out" / "store.zarr").rglob("*") if p.is_file())
    assert 0.99 * on_disk <= sum(arrays.values()) <= on_disk
    assert on_disk <= 393_000_000 * 2 / 5


_VISITOR_GREYS = (0, 10, 20, 30, 40, 50, 128, 205, 215, 225, 235, 245, 255)
"""The greys a square shows in turn: its median, 128, is far from every other grey."""


def _never_still_region_frames(hold: int = 4, height: int = 48, width: int = 64) -> np.ndarray:
    """A still textured scene with a 16 x 16 square that shows :data:`_VISITOR_GREYS` in turn.

    Each grey is held for ``hold`` frames, like visitors who stand in one place one
    after the other: the square's frames change rarely (its median frame-to-frame
    change is 0, so its threshold is not raised), and its median, the middle grey, is
    seen in ``hold`` frames only.  The plate differs from every other frame there by
    78 grey levels or more: the square is foreground in 12 of 13 frames.
    """
    rng = np.random.default_rng(3)
    n_frames = len(_VISITOR_GREYS) * hold
    frames = np.repeat(rng.integers(40, 160, size=(height, width), dtype=np.uint8)[None], n_frames, axis=0)
    for t in range(n_frames):
        frames[t, 8:24, 8:24] = _VISITOR_GREYS[t // hold]
    return frames


def test_a_run_warns_where_the_background_was_hardly_ever_seen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = tmp_path / "ramp.mkv"
    write_video(video, _never_still_region_frames(), fps=10.0, codec="ffv1")
    status, _, err = run_cli(
        capsys, "run", str(video), "--out", str(tmp_path / "job"), "--no-videos", *CLUSTER
    )
    assert status == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("vidsvd: warning:")]
    assert len(warnings) == 1, err  # one line, from the report
    assert "of the pixels are foreground in over 90 % of the frames" in warnings[0]
    separation = json.loads((tmp_path / "job" / "report.json").read_text())["separation"]
    # the square is 256 of 3,072 pixels; the clean-up may trim its corners
    assert 0.07 <= separation["mostly_foreground_pixels"] <= 0.09
    assert separation["warning"] == warnings[0].removeprefix("vidsvd: warning: ")


@pytest.mark.slow
def test_a_high_resolution_run_prints_only_its_own_messages(tmp_path: Path) -> None:
    """2560x1440, in its own process: two graphs carry the threshold map (15 MB), past
    distributed's 10 MB warning for a graph's size (five lines each, twice).  At 3840x2160
    regrouping the sampled frames also went through its P2P shuffle, which logs each
    start and end; none may show either."""
    video = tmp_path / "wide.mp4"
    write_scene(SceneSpec(width=2560, height=1440, n_frames=9, fps=10.0, n_objects=3, seed=8), video)
    _, stderr = own_messages(
        ["run", str(video), "--out", str(tmp_path / "job"), "--no-videos"], timeout_s=300
    )
    assert "large graph" not in stderr and "Shuffle" not in stderr
