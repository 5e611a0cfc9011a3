"""`vidsvd decompose` on the command line: factors on disk, reuse, --force, exact, bad inputs.

Every command that computes starts an embedded LocalCluster; ``CLUSTER`` keeps it at one
worker process with two threads, and the stores are tiny (48x64, 60 frames).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from cluster.options import WORKERLESS_TIMEOUT_S
from pipelines.cli import build_parser, main
from pipelines.cli.cluster_flags import cluster_options
from pipelines.decompose import DEFAULT_OVERSAMPLE, DEFAULT_POWER_ITERS
from pipelines.steps.context import JobContext
from storage.factors import open_factors
from storage.video_array import open_video
from storage.video_encoder import write_video
from tests.helpers import assert_one_line_error, run_cli, tree_digest

CLUSTER = ("--workers", "1", "--threads-per-worker", "2")
RANDOMIZED = ("--method", "randomized")  # these videos are short: the default takes the exact method
HEIGHT, WIDTH, N_FRAMES = 48, 64, 60


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status, _, stderr = run_cli(capsys, *argv)
    return status, stderr


def low_rank_frames(seed: int = 0) -> np.ndarray:
    """A video of rank about 3: three fixed patterns whose strengths vary over time, uint8."""
    rng = np.random.default_rng(seed)
    patterns = rng.uniform(0, 1, (3, HEIGHT, WIDTH))
    t = np.arange(N_FRAMES)
    strengths = np.stack([np.full(N_FRAMES, 120.0), 30 * np.sin(t / 5), 15 * np.cos(t / 3)])
    frames = np.einsum("kt,kyx->tyx", strengths, patterns) + 40
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def _matrix(store: Path) -> np.ndarray:
    """M = frames.reshape(T, -1).T as float32, straight from the stored video."""
    frames = open_video(store).frames.compute()
    return frames.reshape(len(frames), -1).T.astype(np.float32)


def _make_store(folder: Path, name: str, frames: np.ndarray) -> Path:
    video = folder / f"{name}.mkv"
    write_video(video, iter(frames), fps=10.0, codec="ffv1")
    store = folder / f"{name}.zarr"
    assert main(["ingest", str(video), "--store", str(store), "--quiet"]) == 0
    return store


@pytest.fixture(scope="module")
def pristine_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete store of the low-rank video, without factors (copy it before changing it)."""
    return _make_store(tmp_path_factory.mktemp("decompose"), "low-rank", low_rank_frames())


@pytest.fixture
def store(pristine_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "s.zarr"
    shutil.copytree(pristine_store, copy)
    return copy


def _decomposed(folder: Path, frames: np.ndarray) -> Path:
    store = _make_store(folder, "decomposed", frames)
    assert main(["decompose", "--store", str(store), "--rank", "3", "--quiet", *CLUSTER]) == 0
    return store


@pytest.fixture(scope="module")
def decomposed_pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The low-rank video's store with default rank-3 factors (copy it before changing it)."""
    return _decomposed(tmp_path_factory.mktemp("decomposed"), low_rank_frames())


@pytest.fixture(scope="module")
def other_video_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another video's store, with default rank-3 factors (read only)."""
    return _decomposed(tmp_path_factory.mktemp("other"), low_rank_frames(seed=1))


@pytest.fixture
def decomposed(decomposed_pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "decomposed.zarr"
    shutil.copytree(decomposed_pristine, copy)
    return copy


def _assert_same_up_to_sign(a: np.ndarray, b: np.ndarray, *, axis: int, rtol: float) -> None:
    """Columns (axis=0) or rows (axis=1) of a and b are equal up to one sign each."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    signs = np.sign(np.sum(a64 * b64, axis=axis, keepdims=True))
    assert np.all(signs != 0)
    scale = np.max(np.abs(b64))
    np.testing.assert_allclose(a64 * signs, b64, rtol=0, atol=rtol * scale)


def test_decompose_writes_factors_reuses_them_and_force_recomputes(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, stderr = _run(
        capsys, "decompose", "--store", str(store), "--rank", "3", *RANDOMIZED, "--quiet", *CLUSTER
    )
    assert (status, stderr) == (0, "")
    folder = store / "factors" / "randomized-k3"
    assert folder.is_dir()

    video = open_video(store)
    n_pixels = HEIGHT * WIDTH
    group = zarr.open_group(str(folder), mode="r")
    for key, shape in {"U": (n_pixels, 3), "s": (3,), "Vt": (3, N_FRAMES)}.items():
        array = group[key]
        assert array.shape == shape, key
        assert array.dtype == np.float32, key
    attrs = dict(group.attrs)
    assert attrs["complete"] is True
    assert attrs["method"] == "randomized"
    assert attrs["rank"] == 3
    assert attrs["seed"] == 0
    assert (attrs["power_iters"], attrs["oversample"]) == (DEFAULT_POWER_ITERS, DEFAULT_OVERSAMPLE) == (2, 40)
    assert attrs["video_fingerprint"] == video.fingerprint
    assert isinstance(attrs["wall_time_s"], float) and 0 < attrs["wall_time_s"] < 120

    factors = open_factors(store, "randomized-k3", expected_fingerprint=video.fingerprint)
    u, s, vt = (np.asarray(a.compute()) for a in (factors.U, factors.s, factors.Vt))
    matrix = _matrix(store)
    u_ref, s_ref, vt_ref = np.linalg.svd(matrix, full_matrices=False)
    np.testing.assert_allclose(s, s_ref[:3], rtol=1e-3)
    _assert_same_up_to_sign(u, u_ref[:, :3], axis=0, rtol=1e-2)
    _assert_same_up_to_sign(vt, vt_ref[:3], axis=1, rtol=1e-2)
    # U diag(s) Vt is the best rank-3 approximation, up to float32 rounding
    optimal = np.linalg.norm(matrix - (u_ref[:, :3] * s_ref[:3]) @ vt_ref[:3])
    assert np.linalg.norm(matrix - (u * s) @ vt) <= optimal * (1 + 1e-3)

    # a smaller rank with the same parameters reuses rank 3: no cluster, nothing written
    before = tree_digest(store / "factors")
    started = time.monotonic()
    status, stderr = _run(capsys, "decompose", "--store", str(store), "--rank", "2", *RANDOMIZED, *CLUSTER)
    assert status == 0
    assert "reusing" in stderr and "randomized-k3" in stderr
    assert "computing on" not in stderr
    assert time.monotonic() - started < 10  # generous: the point is that no cluster starts
    assert tree_digest(store / "factors") == before
    assert sorted(p.name for p in (store / "factors").iterdir() if p.is_dir()) == ["randomized-k3"]

    # --force recomputes (new provenance on disk) and the same seed gives the same bytes
    status, stderr = _run(
        capsys, "decompose", "--store", str(store), "--rank", "3", "--force", *RANDOMIZED, *CLUSTER
    )
    assert status == 0
    assert "reusing" not in stderr
    assert "factors 'randomized-k3' (rank 3) written" in stderr
    assert tree_digest(store / "factors") != before
    again = open_factors(store, "randomized-k3")
    np.testing.assert_array_equal(again.s.compute(), s)
    np.testing.assert_array_equal(again.U.compute(), u)
    np.testing.assert_array_equal(again.Vt.compute(), vt)
    assert again.attrs["complete"] is True


def test_workers_start_early_only_when_decompose_will_compute(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cluster starts as the command imports dask, unless stored factors may answer first."""
    started: list[str] = []
    warm_up = JobContext.warm_up

    def recording_warm_up(self: JobContext) -> None:
        started.append("early")
        warm_up(self)

    monkeypatch.setattr(JobContext, "warm_up", recording_warm_up)
    decompose = ("decompose", "--store", str(store), "--rank", "3")
    assert _run(capsys, *decompose, *RANDOMIZED, "--quiet", *CLUSTER) == (0, "")
    assert started == ["early"]
    # a smaller rank is answered by the stored factors (the default, auto, takes randomized
    # ones of the default options too): nothing starts
    status, stderr = _run(capsys, "decompose", "--store", str(store), "--rank", "2", *CLUSTER)
    assert status == 0 and "reusing" in stderr
    # the name exists with another seed: refused without --force, and nothing starts first
    status, stderr = _run(capsys, "decompose", "--store", str(store), "--rank", "3", "--seed", "1", *CLUSTER)
    assert status != 0
    # a missing store is reported without a cluster
    status, stderr = _run(capsys, "decompose", "--store", str(tmp_path / "missing.zarr"), "--rank", "3")
    assert status == 1
    assert started == ["early"]
    # --force computes, so it starts early again, and still writes the same factors
    s_before = open_factors(store, "randomized-k3").s.compute()
    assert _run(capsys, *decompose, "--force", *RANDOMIZED, "--quiet", *CLUSTER) == (0, "")
    assert started == ["early", "early"]
    np.testing.assert_array_equal(open_factors(store, "randomized-k3").s.compute(), s_before)


def test_exact_method_matches_numpy(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, stderr = _run(
        capsys, "decompose", "--store", str(store), "--rank", "3", "--method", "exact", "--quiet", *CLUSTER
    )
    assert (status, stderr) == (0, "")
    factors = open_factors(store, "exact-k3")
    assert factors.attrs["method"] == "exact"
    # frames this few and held in the cluster's memory: from their Gram matrix, two reads
    assert (factors.attrs["algorithm"], factors.attrs["passes"]) == ("gram", 2)
    assert factors.attrs["complete"] is True
    assert factors.attrs["video_fingerprint"] == open_video(store).fingerprint
    u, s, vt = (np.asarray(a.compute()) for a in (factors.U, factors.s, factors.Vt))
    assert (u.dtype, s.dtype, vt.dtype) == (np.float32,) * 3
    u_ref, s_ref, vt_ref = np.linalg.svd(_matrix(store).astype(np.float64), full_matrices=False)
    np.testing.assert_allclose(s, s_ref[:3], rtol=1e-6)  # float32's rounding of the exact values
    _assert_same_up_to_sign(u, u_ref[:, :3], axis=0, rtol=1e-3)
    _assert_same_up_to_sign(vt, vt_ref[:3], axis=1, rtol=1e-3)


def _make_incomplete(store: Path) -> None:
    """What a killed ingest leaves: the video array without ``complete: true``."""
    video = zarr.open_array(str(store / "video"), mode="r+")
    video.update_attributes({"complete": False})


@pytest.mark.parametrize(
    ("case", "extra", "status", "fragments"),
    [
        ("missing", ["--rank", "3"], 1, ["no store at", "vidsvd ingest"]),
        ("incomplete", ["--rank", "3"], 1, ["incomplete", "--resume"]),
        ("good", ["--rank", "0"], 2, ["--rank", "at least 1"]),
        ("good", ["--rank", "-1"], 2, ["--rank", "at least 1"]),
        ("good", ["--rank", "abc"], 2, ["--rank", "whole number", "'abc'"]),
        ("good", ["--rank", "2.5"], 2, ["--rank", "whole number", "'2.5'"]),
        ("good", ["--rank", str(N_FRAMES + 1)], 2, ["--rank", f"= {N_FRAMES}", str(N_FRAMES + 1)]),
        ("good", [], 2, ["--rank", "required"]),
        ("good", ["--rank", "3", "--power-iters", "-1"], 2, ["--power-iters", "0 or more"]),
        ("good", ["--rank", "3", "--oversample", "-1"], 2, ["--oversample", "0 or more"]),
        ("good", ["--rank", "3", "--seed", "-1"], 2, ["--seed", "0 or more"]),
        ("good", ["--rank", "3", "--method", "qr"], 2, ["--method", "invalid choice"]),
        ("good", ["--rank", "3", "--memory-limit", "lots"], 2, ["--memory-limit", "not a size"]),
        ("good", ["--rank", "3", "--workerless-timeout", "0"], 2, ["--workerless-timeout", "greater than 0"]),
        ("good", ["--rank", "3", "--workerless-timeout", "soon"], 2, ["--workerless-timeout", "'soon'"]),
        (
            "good",
            ["--rank", "3", "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"],
            2,
            ["--workers", "only apply to the embedded cluster"],
        ),
        ("good", ["--rank", "3", "--scheduler", "http://127.0.0.1:8787"], 2, ["dashboard"]),
        # starts a 1 MB worker, then refuses before computing
        ("good", ["--rank", "3", "--memory-limit", "1MB"], 2, ["memory limit", "--memory-limit"]),
    ],
)
def test_bad_input_is_one_line_and_leaves_the_store_untouched(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case, extra, status, fragments
) -> None:
    if case == "incomplete":
        _make_incomplete(store)
    target = tmp_path / "missing.zarr" if case == "missing" else store
    before = None if case == "missing" else tree_digest(store)
    code, stderr = _run(capsys, "decompose", "--store", str(target), "--quiet", *extra)
    assert code == status
    assert_one_line_error(stderr, *fragments)
    if case == "missing":
        assert not target.exists()
    else:
        assert tree_digest(store) == before
        assert not (store / "factors").exists()


@pytest.mark.slow
def test_unreachable_scheduler_fails_within_30_s(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = tree_digest(store)
    started = time.monotonic()
    code, stderr = _run(
        capsys,
        "decompose",
        "--store",
        str(store),
        "--rank",
        "3",
        "--scheduler",
        "tcp://127.0.0.1:1",
        "--quiet",
    )
    elapsed = time.monotonic() - started
    assert code == 1
    assert_one_line_error(stderr, "cannot reach the dask scheduler at tcp://127.0.0.1:1")
    assert elapsed < 30, elapsed
    assert tree_digest(store) == before


def test_factors_of_another_video_under_the_default_name_are_refused(
    store: Path, other_video_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Factors copied in from another store keep their fingerprint; nothing uses or replaces them."""
    shutil.copytree(other_video_store / "factors", store / "factors")
    before = tree_digest(store)

    code, stderr = _run(capsys, "decompose", "--store", str(store), "--rank", "3", "--quiet", *CLUSTER)
    assert code == 1
    assert_one_line_error(stderr, "'exact-k3' already exist", "--force", "--name")
    assert tree_digest(store) == before

    out = tmp_path / "out"
    code, stderr = _run(
        capsys, "separate", "--store", str(store), "--factors", "exact-k3", "--out", str(out), "--quiet",
        *CLUSTER,
    )  # fmt: skip
    assert code == 1
    assert_one_line_error(stderr, "belong to another video", "--force")
    code, stderr = _run(
        capsys, "separate", "--store", str(store), "--model", "svd", "--out", str(out), "--quiet", *CLUSTER
    )
    assert code == 1
    assert_one_line_error(stderr, "no complete factors of its video", "vidsvd decompose")
    assert tree_digest(store) == before
    assert not out.exists()


@pytest.mark.parametrize(
    "extra",
    [
        ["--name", "bad/name"],
        ["--method", "randomized", "--name", "exact-k3"],  # taken by the default's exact factors
    ],
    ids=["invalid-name", "name-in-use"],
)
def test_name_problems_are_refused_before_computing(
    decomposed: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    store = decomposed
    before = tree_digest(store)
    code, stderr = _run(capsys, "decompose", "--store", str(store), "--rank", "3", *extra, *CLUSTER)
    assert tree_digest(store) == before
    assert code != 0
    # without --quiet, a refusal before any work is the error line alone
    assert_one_line_error(stderr, "--name" if extra[0] == "--name" else "already exist")


def bright_still_frames() -> np.ndarray:
    """A bright, nearly still scene: faint changes at 1e-3 to 2e-4 of the first component."""
    rng = np.random.default_rng(0)
    changes = (
        rng.standard_normal((N_FRAMES, 3)) * [0.5, 0.25, 0.125] @ rng.uniform(-1, 1, (3, HEIGHT * WIDTH))
    )
    return np.clip(np.rint(250 + changes), 0, 255).astype(np.uint8).reshape(N_FRAMES, HEIGHT, WIDTH)


def test_components_the_randomized_method_cannot_resolve_are_zeros_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = bright_still_frames()
    store = _make_store(tmp_path, "bright", frames)
    status, stderr = _run(
        capsys, "decompose", "--store", str(store), "--rank", "4", *RANDOMIZED, "--quiet", *CLUSTER
    )
    assert status == 0
    warning = [line for line in stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and "came back as zeros" in warning[0] and "--method exact" in warning[0]
    s = open_factors(store, "randomized-k4").s[:].compute()
    assert s[0] > 0 and s[-1] == 0
    # the exact method resolves them, and says nothing
    status, stderr = _run(
        capsys, "decompose", "--store", str(store), "--rank", "4", "--method", "exact", "--quiet", *CLUSTER
    )
    assert status == 0 and "warning" not in stderr
    exact = open_factors(store, "exact-k4").s[:].compute()
    reference = np.linalg.svd(frames.reshape(N_FRAMES, -1).T.astype(np.float64), compute_uv=False)[:4]
    np.testing.assert_allclose(exact, reference, rtol=1e-3)


def test_the_default_takes_the_exact_method_for_a_short_video_and_reuses_what_answers_it(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """60 frames at rank 3: the Gram matrix costs fewer flops than the randomized passes."""
    status, stderr = _run(capsys, "decompose", "--store", str(store), "--rank", "3", *CLUSTER)
    assert status == 0
    assert "exact SVD from the frames' Gram matrix: 2 reads" in stderr
    factors = open_factors(store, "exact-k3")
    attrs = factors.attrs
    assert (attrs["method"], attrs["algorithm"], attrs["passes"]) == ("exact", "gram", 2)
    # what ran, not the randomized method's options and layout
    assert not {"power_iters", "oversample", "seed", "iteration", "groups_per_chain"} & attrs.keys()
    assert attrs["frames_per_group"] >= 1
    reference = np.linalg.svd(_matrix(store).astype(np.float64), compute_uv=False)[:3]
    np.testing.assert_allclose(factors.s.compute(), reference, rtol=1e-6)
    before = tree_digest(store / "factors")
    # a smaller rank: answered by those factors, nothing computed
    status, stderr = _run(capsys, "decompose", "--store", str(store), "--rank", "2", *CLUSTER)
    assert status == 0 and "reusing factors 'exact-k3'" in stderr and "computing on" not in stderr
    assert tree_digest(store / "factors") == before
    # a randomized flag asks for the randomized method, which exact factors do not answer
    status, stderr = _run(capsys, "decompose", "--store", str(store), "--rank", "3", "--seed", "0", *CLUSTER)
    assert status == 0 and "reusing" not in stderr
    assert open_factors(store, "randomized-k3").attrs["method"] == "randomized"


@pytest.mark.parametrize("command", ["decompose", "separate", "report", "run", "demo"])
def test_every_computing_command_passes_the_workerless_timeout_to_its_cluster(command: str) -> None:
    # the bound itself is tested on a cluster scaled to zero (tests/pipelines/test_job_context.py)
    target = {
        "decompose": ["--store", "s.zarr", "--rank", "2"],
        "separate": ["--store", "s.zarr"],
        "report": ["--store", "s.zarr"],
        "run": ["video.mp4", "--out", "out"],
        "demo": ["--out", "demo"],
    }[command]
    scheduler = ["--scheduler", "tcp://127.0.0.1:8786"]
    args = build_parser().parse_args([command, *target, *scheduler, "--workerless-timeout", "1800"])
    assert cluster_options(args).workerless_timeout_s == 1800.0
    default = build_parser().parse_args([command, *target, *scheduler])
    assert cluster_options(default).workerless_timeout_s == WORKERLESS_TIMEOUT_S
