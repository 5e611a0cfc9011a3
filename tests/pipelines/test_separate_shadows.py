"""Cast shadows out of the masks of `separate`, `run` and `apply` by default, recorded and checked.

A 96x72 synthetic scene whose three objects cast shadows of 0.5 (marked 50 in its
truth, which scores them as background), through the real encoder; the store is
made once with the shadows kept (`--no-shadows`), and tests that write work on copies.
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

from pipelines.cli import main
from pipelines.shadows import SHADOW_RULE
from pipelines.synthetic import SHADOW_TRUTH, SceneSpec, write_scene
from storage.derived import read_separation
from storage.truth import read_truth_masks
from storage.video_decoder import DecodeOptions, decode_blocks, probe_video
from tests.helpers import assert_one_line_error, run_cli

SCENE = SceneSpec(width=96, height=72, n_frames=60, n_objects=3, shadow_strength=0.5, noise_sigma=2.0, seed=2)


@dataclasses.dataclass(frozen=True)
class Job:
    video: Path
    truth: Path
    out: Path


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Job]:
    folder = tmp_path_factory.mktemp("shadows")
    video, truth, out = folder / "scene.mp4", folder / "truth", folder / "out"
    write_scene(SCENE, video, truth_dir=truth, truth_every=1)
    assert main(["run", str(video), "--out", str(out), "--no-videos", "--no-shadows", "--quiet"]) == 0
    yield Job(video, truth, out)


def _copy(job: Job, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(job.out, out)
    return out


def _scores(capsys: pytest.CaptureFixture[str], out: Path, truth: Path) -> dict[str, float]:
    status, stdout, stderr = run_cli(
        capsys, "evaluate", "--store", str(out / "store.zarr"), "--truth", str(truth), "--json", "--quiet"
    )
    assert (status, stderr) == (0, ""), stderr
    scores: dict[str, float] = json.loads(stdout)["vidsvd"]
    return scores


def test_run_takes_shadows_out_by_default_and_records_the_ratio(
    job: Job, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _copy(job, tmp_path)
    before = _scores(capsys, out, job.truth)
    status, _, stderr = run_cli(capsys, "run", str(job.video), "--out", str(out), "--no-videos")
    assert status == 0, stderr
    assert "separate: done" in stderr  # the store's separation kept its shadows: made again
    assert "cast shadows: pixels at 0.5" in stderr, stderr
    after = _scores(capsys, out, job.truth)
    # measured: F 0.776 -> 0.925, precision 0.637 -> 0.867, recall 0.993 -> 0.992 (0.894 with
    # the shadows' soft edges kept, which the clean-up's filling put whole shadows back through)
    assert after["f_measure"] > before["f_measure"] + 0.1
    assert after["precision"] > before["precision"] + 0.15
    assert after["recall"] > before["recall"] - 0.02
    record = read_separation(out / "store.zarr")
    assert record is not None and record.complete
    assert record.shadows and record.shadow_ratio == pytest.approx(1 - SCENE.shadow_strength, abs=0.03)
    shown = json.loads((out / "separation.json").read_text())
    assert (shown["shadows"], shown["shadow_ratio"]) == (True, record.shadow_ratio)
    report = json.loads((out / "report.json").read_text())
    assert f"(ratio {record.shadow_ratio:.2f})" in report["separation"]["shadows"]
    assert f"(ratio {record.shadow_ratio:.2f})" in (out / "report.html").read_text()


def test_shadows_on_weakly_textured_ground_leave_the_masks(tmp_path: Path) -> None:
    """Ground like asphalt (its pattern about 1 grey level over 15 pixels, below the noise of 2.5).

    The share of the shadows' pixels (truth 50) that the masks hold, with shadows kept
    and taken out: measured 1.0 and 0.68 (0.92 by the rule before the noise's test).
    On such ground, parts of shadows stay: regions too flat for the slope's test.
    """
    scene = dataclasses.replace(
        SCENE, width=320, height=240, shadow_strength=0.4, ground_contrast=0.25, noise_sigma=2.5, seed=4
    )
    video, truth = tmp_path / "scene.mp4", tmp_path / "truth"
    write_scene(scene, video, truth_dir=truth, truth_every=1)
    truth_frames, truth_masks = zip(*read_truth_masks(truth), strict=True)
    shadow_truth = np.stack(truth_masks) == SHADOW_TRUTH
    shares = []
    for flag in ("--no-shadows", "--shadows"):
        out = tmp_path / flag
        assert main(["run", str(video), "--out", str(out), "--no-videos", flag, "--quiet"]) == 0
        stored = zarr.open_array(str(out / "store.zarr" / "masks"), mode="r")
        masks = np.asarray(stored[:])[list(truth_frames)] > 0
        shares.append(float(masks[shadow_truth].mean()))
    kept, taken_out = shares
    assert kept > 0.95
    assert taken_out < 0.8


def test_a_separation_is_reused_only_with_the_same_shadows_flag(
    job: Job, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _copy(job, tmp_path)
    argv = ("run", str(job.video), "--out", str(out), "--no-videos")
    status, _, stderr = run_cli(capsys, *argv, "--no-shadows")
    assert status == 0 and "separate: skipped (complete)" in stderr, stderr
    assert run_cli(capsys, *argv)[0] == 0
    for flags in ((), ("--shadows",)):
        status, _, stderr = run_cli(capsys, *argv, *flags)
        assert status == 0 and "separate: skipped (complete)" in stderr, stderr
    status, _, stderr = run_cli(capsys, *argv, "--no-shadows")
    assert status == 0 and "separate: done" in stderr, stderr
    record = read_separation(out / "store.zarr")
    assert record is not None and (record.shadows, record.shadow_ratio) == (False, 0.0)
    assert "shadows" not in json.loads((out / "report.json").read_text())["separation"]


def test_masks_whose_shadows_an_older_rule_took_out_are_made_again(
    job: Job, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _copy(job, tmp_path)
    argv = ("run", str(job.video), "--out", str(out), "--no-videos")
    assert run_cli(capsys, *argv)[0] == 0
    record = read_separation(out / "store.zarr")
    assert record is not None and record.shadow_rule == SHADOW_RULE
    for array in ("masks", "foreground"):  # as a version that did not record its rule wrote them
        if (out / "store.zarr" / array).exists():
            zarr.open_array(str(out / "store.zarr" / array), mode="r+").attrs.update({"shadow_rule": ""})
    status, _, stderr = run_cli(capsys, *argv)
    assert status == 0 and "separate: done" in stderr, stderr
    record = read_separation(out / "store.zarr")
    assert record is not None and record.shadow_rule == SHADOW_RULE


def test_a_scene_without_foreground_shows_no_shadow_ratio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = tmp_path / "still.mp4"
    write_scene(dataclasses.replace(SCENE, n_objects=0, n_frames=30), video)
    out = tmp_path / "out"
    status, _, stderr = run_cli(capsys, "run", str(video), "--out", str(out), "--no-videos")
    assert status == 0, stderr
    assert "the sample shows no shadow ratio; no pixel taken out of the masks" in stderr
    record = read_separation(out / "store.zarr")
    assert record is not None and (record.shadows, record.shadow_ratio) == (True, 0.0)
    report = json.loads((out / "report.json").read_text())
    assert report["separation"]["shadows"].startswith("the sample showed no shadow ratio")


def _mask_panels_share(compare_mp4: Path) -> float:
    """Share of white pixels in the mask panels of compare.mp4 (the fourth of four, as wide as the video)."""
    info = probe_video(compare_mp4)
    panels = np.concatenate(
        list(decode_blocks(info, DecodeOptions(width=info.width, height=info.height), block_frames=16))
    )
    return float((panels[:, :, 3 * SCENE.width :] > 128).mean())


def _as_an_earlier_version_wrote_it(out: Path) -> None:
    """Erase the recorded shadow rule, as a version from before it was recorded left it."""
    for array in ("masks", "foreground"):
        if (out / "store.zarr" / array).exists():
            zarr.open_array(str(out / "store.zarr" / array), mode="r+").attrs.update({"shadow_rule": ""})


def test_a_folder_that_shows_the_other_setting_is_made_again(
    job: Job, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The store's masks take shadows out, but the folder shows a separation that kept them."""
    out = _copy(job, tmp_path)
    store = str(out / "store.zarr")
    elsewhere = ("separate", "--store", store, "--out", str(tmp_path / "other"), "--no-videos", "--quiet")
    assert run_cli(capsys, *elsewhere)[0] == 0
    assert json.loads((out / "separation.json").read_text())["shadows"] is False
    status, _, stderr = run_cli(capsys, "run", str(job.video), "--out", str(out), "--no-videos")
    assert status == 0 and "separate: done" in stderr, stderr
    assert json.loads((out / "separation.json").read_text())["shadows"] is True


def test_apply_and_report_do_not_pass_an_earlier_rule_off_as_this_one(
    job: Job, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _copy(job, tmp_path)
    store = str(out / "store.zarr")
    assert run_cli(capsys, "separate", "--store", store, "--out", str(out), "--no-videos", "--quiet")[0] == 0
    _as_an_earlier_version_wrote_it(out)
    applied = ("apply", str(job.video), "--store", store, "--out", str(tmp_path / "applied"))
    status, stdout, stderr = run_cli(capsys, *applied)
    assert (status, stdout) == (1, "")
    assert_one_line_error(stderr, "earlier rule", "vidsvd separate --store")
    assert not (tmp_path / "applied").exists()
    status, _, stderr = run_cli(capsys, "report", "--store", store, "--out", str(out), "--quiet")
    assert status == 0, stderr
    shown = json.loads((out / "report.json").read_text())["separation"]["shadows"]
    assert shown.startswith("cast shadows removed by an earlier rule, not recorded; separate again")


def test_apply_takes_out_the_shadows_its_separation_did(
    job: Job, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _copy(job, tmp_path)
    store = str(out / "store.zarr")
    applied = ("apply", str(job.video), "--store", store, "--out", str(tmp_path / "applied"))
    status, _, stderr = run_cli(capsys, *applied)
    assert status == 0 and "cast shadows" not in stderr, stderr
    kept = _mask_panels_share(tmp_path / "applied" / "compare.mp4")
    separate = ("separate", "--store", store, "--out", str(out), "--no-videos", "--quiet")
    assert run_cli(capsys, *separate)[0] == 0
    status, _, stderr = run_cli(capsys, *applied)
    assert status == 0, stderr
    assert "cast shadows: pixels at 0.5" in stderr, stderr
    # measured: 0.151 of the mask panels white with the shadows kept, 0.117 without them
    assert _mask_panels_share(tmp_path / "applied" / "compare.mp4") < 0.9 * kept


def test_evaluate_and_report_score_the_models_as_the_separation_makes_them(
    job: Job, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _copy(job, tmp_path)
    store = str(out / "store.zarr")
    separate = ("separate", "--store", store, "--out", str(out), "--no-videos", "--quiet")
    assert run_cli(capsys, *separate)[0] == 0
    scored = (
        "evaluate",
        "--store",
        store,
        "--truth",
        str(job.truth),
        "--json",
        "--quiet",
        "--models",
        "robust",
    )
    for flags in ((), ("--shadows",)):  # the default, and said
        status, stdout, stderr = run_cli(capsys, *scored, *flags)
        assert (status, stderr) == (0, ""), stderr
        with_shadows = json.loads(stdout)
        for key in ("recall", "precision", "f_measure", "frames"):
            assert with_shadows["vidsvd-robust"][key] == with_shadows["vidsvd"][key], key
    status, stdout, _ = run_cli(capsys, *scored, "--no-shadows")
    assert status == 0
    assert json.loads(stdout)["vidsvd-robust"]["f_measure"] < with_shadows["vidsvd"]["f_measure"] - 0.1
    status, _, stderr = run_cli(
        capsys, "report", "--store", store, "--out", str(out), "--truth", str(job.truth), "--quiet"
    )
    assert status == 0, stderr
    quality = json.loads((out / "report.json").read_text())["quality"]
    assert quality["vidsvd-robust"]["f_measure"] == quality["vidsvd"]["f_measure"]


def test_evaluate_scores_the_models_as_the_stored_masks_were_made_unless_told(
    job: Job, capsys: pytest.CaptureFixture[str]
) -> None:
    scored = (
        "evaluate",
        "--store",
        str(job.out / "store.zarr"),
        "--truth",
        str(job.truth),
        "--json",
        "--quiet",
    )
    status, stdout, stderr = run_cli(capsys, *scored, "--models", "robust")  # the store kept its shadows
    assert (status, stderr) == (0, ""), stderr
    rows = json.loads(stdout)
    assert rows["vidsvd-robust"]["f_measure"] == rows["vidsvd"]["f_measure"]
    status, stdout, _ = run_cli(capsys, *scored, "--models", "robust", "--shadows")
    assert status == 0
    assert json.loads(stdout)["vidsvd-robust"]["f_measure"] > rows["vidsvd"]["f_measure"] + 0.1


@pytest.mark.parametrize("flag", ["--shadows", "--no-shadows"])
def test_evaluate_refuses_a_shadows_flag_without_models(
    job: Job, flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, stdout, stderr = run_cli(
        capsys, "evaluate", "--store", str(job.out / "store.zarr"), "--truth", str(job.truth), flag
    )
    assert (status, stdout) == (2, "")
    assert_one_line_error(stderr, flag, "--models")
