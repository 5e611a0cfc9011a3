"""`--model robust|median|svd` on the command line: defaults, reuse, apply and every refusal."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipelines import background_models
from pipelines.cli import arguments, main
from pipelines.frame_gains import frame_gains
from pipelines.scene_textures import sway_region
from pipelines.steps.background import ROBUST_FIT
from pipelines.synthetic import SceneSpec, illumination_gain, render_background
from storage.derived import open_derived
from storage.factor_lookup import list_factors
from storage.factors import open_factors
from storage.video_array import open_video
from storage.video_decoder import DecodeOptions, decode_blocks, probe_video
from tests.helpers import assert_one_line_error, ingested_scene, run_cli, tree_digest

CLUSTER = ("--workers", "1", "--threads-per-worker", "2")
SCENE = SceneSpec(width=64, height=48, n_frames=60, n_objects=2, seed=3)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The scene's video and a store holding only its ingest."""
    yield ingested_scene(SCENE, tmp_path_factory.mktemp("models"))


def _separate(capsys: pytest.CaptureFixture[str], store: Path, *, model: str, out: Path) -> None:
    """``vidsvd separate --store STORE --model MODEL --out OUT --quiet``, which must succeed."""
    argv = ("separate", "--store", str(store), "--model", model, "--out", str(out), "--quiet", *CLUSTER)
    code, _, stderr = run_cli(capsys, *argv)
    assert code == 0, stderr


def test_the_cli_spells_the_models_as_the_library_does() -> None:
    assert arguments.BACKGROUND_MODELS == background_models.BACKGROUND_MODELS
    assert arguments.DEFAULT_MODEL == background_models.DEFAULT_MODEL


def test_median_and_robust_need_no_decomposition_and_are_reused(
    ingested: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, source = ingested
    store = tmp_path / "s.zarr"
    shutil.copytree(source, store)
    out = tmp_path / "out"
    for model in ("median", "robust"):
        _separate(capsys, store, model=model, out=out)
        factors = open_factors(store, model)
        assert (
            factors.method == model and factors.passes == {"median": 1, "robust": 4}[model]
        )  # no pixel outside its window; the robust plate takes the ground back somewhere
        assert open_derived(store, "masks").record.factors == model
        first_id = factors.factors_id
        _separate(capsys, store, model=model, out=out)
        assert open_factors(store, model).factors_id == first_id  # fitted once, then reused
    # the median plate is the exact lower median of the stored frames
    frames = open_video(store).frames.compute()
    median = open_factors(store, "median")
    u, s, vt = (np.asarray(a.compute(), np.float64) for a in (median.U, median.s, median.Vt))
    plate = np.sort(frames.reshape(len(frames), -1), axis=0)[(len(frames) - 1) // 2]
    rebuilt = (u * s) @ vt  # (P, T), the plate in every frame
    np.testing.assert_allclose(rebuilt[:, 0], plate, atol=0.01)

    # report and apply choose an SVD when not told, never a fitted background
    code, _, stderr = run_cli(capsys, "report", "--store", str(store), "--out", str(out), "--quiet", *CLUSTER)
    assert code == 1
    assert_one_line_error(stderr, "no complete factors of its video", "vidsvd decompose")
    assert sorted(f.name for f in list_factors(store)) == ["median", "robust"]


def test_robust_factors_of_another_fit_are_fitted_again(
    ingested: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Factors written before the plate was divided by the gains are stale: never reused."""
    video, source = ingested
    store, out = tmp_path / "s.zarr", tmp_path / "out"
    shutil.copytree(source, store)
    run = (
        "run",
        str(video),
        "--store",
        str(store),
        "--out",
        str(out),
        "--rank",
        "2",
        "--no-videos",
        "--quiet",
    )
    assert main([*run, *CLUSTER]) == 0
    fitted = open_factors(store, "robust")
    assert fitted.attrs["fit"] == ROBUST_FIT
    group = zarr.open_group(str(store / "factors" / "robust"), mode="r+")
    group.attrs.update({"fit": "plain median times gains"})  # as an older version wrote them
    code, _, stderr = run_cli(capsys, *run, *CLUSTER)
    assert code == 0, stderr
    refitted = open_factors(store, "robust")
    assert refitted.attrs["fit"] == ROBUST_FIT
    assert refitted.factors_id != fitted.factors_id
    separation = open_derived(store, "masks").record
    assert separation.factors == "robust" and separation.factors_id == refitted.factors_id


def test_the_robust_plate_is_the_clean_background_under_drifting_light(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Light varying by +-40 %: the plate of the plain median times gains is off, the robust one is not."""
    spec = SceneSpec(
        width=96, height=72, n_frames=120, n_objects=5, noise_sigma=2.0, illumination_drift=0.4,
        pause_fraction=0.2, seed=4,
    )  # fmt: skip
    _, store = ingested_scene(spec, tmp_path, name="drift")
    for model in ("median", "robust"):
        _separate(capsys, store, model=model, out=tmp_path / model)
    picked = [0, 30, 60, 90]  # light at 1.0, 1.4, 1.0 and 0.6 times the clean plate's
    lit = np.stack([render_background(spec).ravel() * illumination_gain(spec, t) for t in picked], axis=1)
    robust = open_factors(store, "robust")
    u, s, vt = (np.asarray(a.compute(), np.float64) for a in (robust.U, robust.s, robust.Vt))
    robust_error = np.median(np.abs((u * s) @ vt[:, picked] - lit))
    # the model before: the plain median, times each frame's gain against it
    median = open_factors(store, "median")
    plain = np.asarray(((median.U * median.s) @ median.Vt)[:, 0].compute(), np.float64)
    gains = frame_gains(open_video(store).frames, plain).compute()[picked]
    plain_error = np.median(np.abs(plain[:, None] * gains[None, :] - lit))
    # measured: 0.33 grey levels against 7.3
    assert robust_error < 1.5 and plain_error > 3 * robust_error, (robust_error, plain_error)


def test_apply_uses_the_background_separate_used(
    ingested: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video, source = ingested
    store = tmp_path / "s.zarr"
    shutil.copytree(source, store)
    assert main(["separate", "--store", str(store), "--out", str(tmp_path / "o"), "--quiet", *CLUSTER]) == 0
    code, _, stderr = run_cli(
        capsys, "apply", str(video), "--store", str(store), "--out", str(tmp_path / "a")
    )
    assert code == 0, stderr
    assert "'robust'" in stderr
    assert (tmp_path / "a" / "compare.mp4").exists()


@pytest.mark.parametrize(
    ("argv", "status", "fragments"),
    [
        (["separate", "--model", "robust", "--factors", "x"], 2, ("SVD factors", "robust model")),
        (["separate", "--model", "median", "--rank", "2"], 2, ("SVD factors", "median model")),
        (["separate", "--model", "blur"], 2, ("--model", "robust")),
        (["decompose", "--rank", "2", "--name", "robust"], 2, ("'robust'", "--name")),
    ],
)
def test_bad_model_options_are_one_line_and_change_nothing(
    ingested: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    status: int,
    fragments: tuple[str, ...],
) -> None:
    _, store = ingested
    before = tree_digest(store)
    out = tmp_path / "out"
    extra = ["--out", str(out)] if argv[0] == "separate" else []
    code, _, stderr = run_cli(capsys, argv[0], "--store", str(store), *argv[1:], *extra, "--quiet", *CLUSTER)
    assert code == status
    assert_one_line_error(stderr, *fragments)
    assert tree_digest(store) == before
    assert not out.exists()


def test_svd_model_refuses_a_fitted_background(
    ingested: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, source = ingested
    store = tmp_path / "s.zarr"
    shutil.copytree(source, store)
    assert (
        main(
            [
                "separate",
                "--store",
                str(store),
                "--model",
                "median",
                "--out",
                str(tmp_path / "o"),
                "--quiet",
                *CLUSTER,
            ]
        )
        == 0
    )
    before = tree_digest(store)
    code, _, stderr = run_cli(
        capsys, "separate", "--store", str(store), "--factors", "median", "--out", str(tmp_path / "p"), "--quiet",
        *CLUSTER,
    )  # fmt: skip
    assert code == 2
    assert_one_line_error(stderr, "median model's background", "not an SVD")
    assert tree_digest(store) == before


def test_separate_and_apply_keep_swaying_leaves_out_of_the_masks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing moves but leaves: the auto threshold, raised per pixel where the video varies,
    marks none of them (measured 0.03 %); the same threshold given for every pixel, 46 %."""
    scene = SceneSpec(width=96, height=72, n_frames=40, n_objects=0, swaying_fraction=0.3, seed=4)
    leaves = sway_region(scene, scene.swaying_fraction)
    video, store = ingested_scene(scene, tmp_path, name="leaves")
    marked: dict[str, float] = {}
    applied: dict[str, float] = {}
    for rule in ("auto", "given"):
        extra: tuple[str, ...] = ()
        if rule == "given":  # the very threshold auto chose, for every pixel
            extra = ("--threshold", f"{open_derived(store, 'masks').record.threshold:.6f}")
        out = tmp_path / rule
        code, _, stderr = run_cli(
            capsys, "separate", "--store", str(store), "--out", str(out), *extra, *CLUSTER
        )
        assert code == 0, stderr
        record = open_derived(store, "masks").record
        assert record.pixel_noise_factor == (3.0 if rule == "auto" else 0.0)
        marked[rule] = float((open_derived(store, "masks").data.compute()[:, leaves] > 0).mean())
        code, _, stderr = run_cli(
            capsys, "apply", str(video), "--store", str(store), "--out", str(tmp_path / f"a-{rule}"), *extra
        )
        assert code == 0, stderr
        info = probe_video(tmp_path / f"a-{rule}" / "compare.mp4")
        options = DecodeOptions(width=info.width, height=info.height)
        panels = np.concatenate(list(decode_blocks(info, options, block_frames=16)))
        below_label = leaves.copy()
        below_label[:16] = False  # the panel's name is written at its top
        applied[rule] = float((panels[:, :, 3 * scene.width :][:, below_label] > 128).mean())
    assert marked["auto"] < 0.01 < marked["given"]
    assert applied["auto"] < 0.01 < applied["given"]
