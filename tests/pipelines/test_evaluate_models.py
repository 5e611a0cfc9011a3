"""`vidsvd evaluate --models`: each background model scored side by side on one truth.

One module-scoped store of a 64x48 synthetic scene (through the real encoder) with a
truth mask per frame is ingested, decomposed (rank 3) and separated with the default
model; tests that write work on copies.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipelines import api
from pipelines.cli import arguments, main
from pipelines.steps import evaluate
from pipelines.synthetic import SceneSpec, write_scene
from storage.derived import open_derived
from storage.errors import InvalidParameterError
from storage.factors import open_factors
from tests.helpers import assert_one_line_error, run_cli, tree_digest

SCENE = SceneSpec(width=64, height=48, n_frames=90, n_objects=2, seed=4)
SCORE_KEYS = ("recall", "specificity", "fpr", "fnr", "pwc", "precision", "f_measure", "frames")


@dataclasses.dataclass(frozen=True)
class Scene:
    video: Path
    truth: Path
    store: Path


@pytest.fixture(scope="module")
def separated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    folder = tmp_path_factory.mktemp("models")
    video, truth, store = folder / "scene.mp4", folder / "truth", folder / "s.zarr"
    write_scene(SCENE, video, truth_dir=truth, truth_every=1)
    assert main(["ingest", str(video), "--store", str(store), "--quiet"]) == 0
    assert main(["decompose", "--store", str(store), "--rank", "3", "--quiet"]) == 0
    assert (
        main(["separate", "--store", str(store), "--out", str(folder / "out"), "--no-videos", "--quiet"]) == 0
    )
    yield Scene(video, truth, store)


def _evaluate(
    capsys: pytest.CaptureFixture[str], store: Path, truth: Path, *argv: str
) -> tuple[int, str, str]:
    return run_cli(capsys, "evaluate", "--store", str(store), "--truth", str(truth), "--quiet", *argv)


def test_each_model_is_scored_as_separate_would_mask_it(
    separated: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The robust row equals the stored masks (made by the robust model); the svd row equals
    what `separate --model svd` stores; the stored masks stay as they were."""
    store = tmp_path / "s.zarr"
    shutil.copytree(separated.store, store)
    masks_before = open_derived(store, "masks").data.compute()

    status, stdout, stderr = _evaluate(
        capsys, store, separated.truth, "--models", "robust,median,svd", "--json"
    )
    assert (status, stderr) == (0, ""), stderr
    results = json.loads(stdout)
    assert list(results) == ["vidsvd", "vidsvd-robust", "vidsvd-median", "vidsvd-svd"]
    for key in SCORE_KEYS:
        assert results["vidsvd-robust"][key] == results["vidsvd"][key], key
    for method in ("vidsvd-robust", "vidsvd-median", "vidsvd-svd"):
        assert results[method]["frames"] == SCENE.n_frames
        assert results[method]["f_measure"] > 0.9, method
        assert results[method]["fit_s"] > 0, method
    assert "fit_s" not in results["vidsvd"]
    np.testing.assert_array_equal(open_derived(store, "masks").data.compute(), masks_before)
    assert open_factors(store, "median").rank == 1  # fitted and kept for a later separate

    assert main(["separate", "--store", str(store), "--out", str(tmp_path / "o"), "--model", "svd",
                 "--no-videos", "--quiet"]) == 0  # fmt: skip
    status, stdout, _ = _evaluate(capsys, store, separated.truth, "--json")
    assert status == 0
    for key in SCORE_KEYS:
        assert json.loads(stdout)["vidsvd"][key] == results["vidsvd-svd"][key], key


def test_the_table_shows_the_fit_time_of_each_model(
    separated: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s.zarr"
    shutil.copytree(separated.store, store)
    status, table, _ = _evaluate(capsys, store, separated.truth, "--models", "svd")
    assert status == 0
    header, stored, svd = table.strip().splitlines()
    assert header.split() == [
        "method", "recall", "specificity", "fpr", "fnr", "pwc", "precision", "f_measure", "fit_s"
    ]  # fmt: skip
    assert stored.split()[0] == "vidsvd" and stored.split()[-1] == "-"
    assert svd.split()[0] == "vidsvd-svd" and float(svd.split()[-1]) >= 0
    assert len({len(line) for line in (header, stored, svd)}) == 1  # the columns line up


def test_models_are_scored_before_any_separation(
    separated: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store with a video only: the models' rows, no stored row; without --models it is an error."""
    store = tmp_path / "s.zarr"
    assert main(["ingest", str(separated.video), "--store", str(store), "--quiet"]) == 0
    status, stdout, stderr = _evaluate(capsys, store, separated.truth, "--models", "robust", "--json")
    assert (status, stderr) == (0, "")
    assert list(json.loads(stdout)) == ["vidsvd-robust"]

    status, _, stderr = _evaluate(capsys, store, separated.truth)
    assert status == 1
    assert_one_line_error(stderr, "no masks", "vidsvd separate")


def test_the_svd_model_needs_a_decompose_first(
    separated: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s.zarr"
    assert main(["ingest", str(separated.video), "--store", str(store), "--quiet"]) == 0
    before = tree_digest(store)
    status, stdout, stderr = _evaluate(capsys, store, separated.truth, "--models", "svd")
    assert (status, stdout) == (1, "")
    assert_one_line_error(stderr, "decompose")
    assert tree_digest(store) == before


@pytest.mark.parametrize("models", ["robust,mean", "", " , ", "SVD"])
def test_unknown_models_are_refused_in_one_line(
    separated: Scene, models: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree_digest(separated.store)
    status, stdout, stderr = _evaluate(capsys, separated.store, separated.truth, f"--models={models}")
    assert (status, stdout) == (2, "")
    assert_one_line_error(stderr, "--models takes robust,median,svd")
    assert tree_digest(separated.store) == before


def test_the_api_refuses_an_unknown_model_before_reading(separated: Scene) -> None:
    before = tree_digest(separated.store)
    with pytest.raises(InvalidParameterError, match="models are robust, median, svd, got 'mean'"):
        api.evaluate(store=separated.store, truth=separated.truth, models=["robust", "mean"])
    assert tree_digest(separated.store) == before


def test_the_report_scores_the_models_against_the_truth(
    separated: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`report --truth`: the stored masks, the robust model the store holds and the SVD, side by side."""
    store, out = tmp_path / "s.zarr", tmp_path / "report"
    shutil.copytree(separated.store, store)
    argv = ["report", "--store", str(store), "--out", str(out), "--truth", str(separated.truth), "--quiet"]
    status, stdout, stderr = run_cli(capsys, *argv, "--json")
    assert (status, stderr) == (0, ""), stderr
    quality = json.loads(stdout)["quality"]
    assert list(quality) == ["vidsvd", "vidsvd-robust", "vidsvd-svd"]
    assert json.loads((out / "report.json").read_text())["quality"] == quality
    status, scores, _ = _evaluate(capsys, store, separated.truth, "--models", "robust,svd", "--json")
    assert status == 0
    assert quality == json.loads(scores)
    page = (out / "report.html").read_text()
    assert "Quality against ground truth" in page and "vidsvd-svd" in page

    status, table, _ = run_cli(capsys, *argv)
    assert status == 0
    assert "f_measure" in table and "vidsvd-robust" in table  # after the rank table


def test_the_report_refuses_a_truth_it_cannot_read(
    separated: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    argv = ["report", "--store", str(separated.store), "--out", str(out), "--quiet"]
    status, stdout, stderr = run_cli(capsys, *argv, "--truth", str(tmp_path / "nowhere"))
    assert (status, stdout) == (1, "")
    assert_one_line_error(stderr, "nowhere")
    assert not (out / "report.json").exists()
    status, _, stderr = run_cli(capsys, *argv, "--truth", str(separated.truth), "--format", "voc")
    assert status == 2
    assert_one_line_error(stderr, "--format")
    with pytest.raises(InvalidParameterError, match="truth_format must be cdnet or masks"):
        api.report(store=separated.store, out=out, truth=separated.truth, truth_format="voc")


def test_the_cli_spells_the_truth_layouts_as_the_library_does() -> None:
    assert arguments.TRUTH_FORMATS == evaluate.TRUTH_FORMATS


def test_run_redoes_a_report_that_lacks_a_background_fitted_since(
    separated: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A median fitted by `evaluate --models` after `run` is shown by the next `run`'s report."""
    out = tmp_path / "out"
    argv = ("run", str(separated.video), "--out", str(out), "--no-videos")

    def report_step() -> str:
        status, _, stderr = run_cli(capsys, *argv)
        assert status == 0, stderr
        return stderr.rsplit("report: ", 1)[1].split(";")[0]

    assert report_step() == "done"
    assert report_step() == "skipped (complete)"
    status, _, _ = _evaluate(capsys, out / "store.zarr", separated.truth, "--models", "median")
    assert status == 0
    assert report_step() == "done"
    shown = json.loads((out / "report.json").read_text())["background_models"]
    assert sorted(model["name"] for model in shown) == ["median", "robust"]
    assert report_step() == "skipped (complete)"


def test_run_with_a_truth_reports_the_models_scores_at_every_run(
    separated: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ("run", str(separated.video), "--out", str(out), "--no-videos", "--truth", str(separated.truth))
    for expected in ("done", "done"):  # a report scored on a truth is never reused
        status, _, stderr = run_cli(capsys, *argv)
        assert status == 0, stderr
        assert stderr.rsplit("report: ", 1)[1].split(";")[0] == expected
    quality = json.loads((out / "report.json").read_text())["quality"]
    assert list(quality) == ["vidsvd", "vidsvd-robust", "vidsvd-svd"]
    assert quality["vidsvd"]["f_measure"] == quality["vidsvd-robust"]["f_measure"] > 0.9


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (("--truth", "nowhere"), "nowhere"),
        (("--truth", "nowhere", "--format", "cdnet"), "nowhere"),
    ],
)
def test_run_refuses_an_unreadable_truth_before_any_work(
    separated: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], words: str
) -> None:
    out = tmp_path / "out"
    argv = ["run", str(separated.video), "--out", str(out), "--no-videos", "--quiet"]
    status, stdout, stderr = run_cli(
        capsys, *argv, *(str(tmp_path / f) if f == "nowhere" else f for f in flags)
    )
    assert (status, stdout) == (1, "")
    assert_one_line_error(stderr, words)
    assert not (out / "store.zarr").exists()


def test_masks_made_by_earlier_rules_are_scored_with_a_warning_and_another_video_s_are_refused(
    separated: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stored masks are scored as they are, but a store whose masks an older version made (or
    made from factors replaced since) says so; masks of another video are not scored at all."""
    store = tmp_path / "s.zarr"
    shutil.copytree(separated.store, store)
    status, current, stderr = _evaluate(capsys, store, separated.truth, "--json")
    assert (status, stderr) == (0, "")
    masks = zarr.open_array(str(store / "masks"), mode="r+")
    masks.attrs.update({"cleanup": "median 3x3", "shadow_rule": "an older rule"})
    status, stdout, stderr = _evaluate(capsys, store, separated.truth, "--json")
    assert status == 0
    assert json.loads(stdout) == json.loads(current)  # the same masks, the same scores
    assert stderr.count("\n") == 1 and stderr.startswith("vidsvd: warning: the stored masks were made")
    assert "by an earlier clean-up, by an earlier shadow rule" in stderr
    assert f"`vidsvd separate --store {store}`" in stderr

    masks.attrs.update({"video_fingerprint": "0" * 64})
    before = tree_digest(store)
    status, stdout, stderr = _evaluate(capsys, store, separated.truth, "--json")
    assert (status, stdout) == (1, "")
    assert_one_line_error(stderr, "the stored masks in", "are of another video", "vidsvd separate --store")
    assert tree_digest(store) == before
