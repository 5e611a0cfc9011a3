"""`vidsvd bench run`: the whole run against OpenCV's subtractors, its table and bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipelines.bench.opencv_subtractor import subtract
from pipelines.bench.run_vs_opencv import CONTENDERS, RunContender, compare_runs, format_run_comparison
from storage.errors import InvalidParameterError
from tests.helpers import assert_one_line_error, run_cli


def test_the_table_gives_each_contender_against_mog2() -> None:
    contenders = [
        RunContender(
            name="vidsvd run",
            wall_times_s=(30.0, 20.0, 25.0),
            peak_rss_bytes=2**30,
            frames=341,
            cpu_times_s=(50.0, 36.0, 40.0),
        ),
        RunContender(
            name="opencv mog2",
            wall_times_s=(5.0, 6.0, 4.0),
            peak_rss_bytes=2**27,
            frames=341,
            cpu_times_s=(6.0, 7.0, 7.5),
        ),
        RunContender(name="opencv knn", wall_times_s=(7.0,), peak_rss_bytes=2**27, frames=341),
    ]
    lines = format_run_comparison(contenders, video=Path("clip.avi")).splitlines()
    assert lines[0] == "clip.avi: whole cold commands, medians of 3 alternating rounds"
    assert lines[1].split() == [
        "contender",
        "frames",
        "median",
        "s",
        "range",
        "s",
        "CPU",
        "s",
        "cores",
        "peak",
        "MiB",
        "x",
        "MOG2",
    ]
    # cores: the median CPU time over the median wall time
    assert lines[2].split() == ["vidsvd", "run", "341", "25.00", "20.0-30.0", "40.0", "1.60", "1024", "5.00"]
    assert lines[3].split() == ["opencv", "mog2", "341", "5.00", "4.0-6.0", "7.0", "1.40", "128", "1.00"]
    # no CPU time reported: no figure made up
    assert lines[4].split() == ["opencv", "knn", "341", "7.00", "7.0-7.0", "-", "-", "128", "1.40"]


@pytest.mark.parametrize("subtractor", ["mog2", "knn"])
def test_the_opencv_contender_reads_every_frame(subtractor: str, make_video, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    video, frames = make_video(n_frames=12)
    assert subtract(subtractor, video, tmp_path / "out") == len(frames)
    written = json.loads((tmp_path / "out" / "opencv.json").read_text())
    assert written["frames"] == len(frames) and written["seconds"] > 0


def test_the_opencv_contender_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mog2 or knn"):
        subtract("gmg", tmp_path / "clip.mkv", tmp_path / "out")
    not_a_video = tmp_path / "clip.mkv"
    not_a_video.write_bytes(b"not a video")
    with pytest.raises(RuntimeError, match="OpenCV"):
        subtract("mog2", not_a_video, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_rounds_below_one_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="rounds"):
        compare_runs(tmp_path / "clip.mkv", rounds=0)


@pytest.mark.slow
def test_the_benchmark_runs_every_contender_on_one_video(
    make_video, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    video, frames = make_video(n_frames=20)
    code, out, err = run_cli(capsys, "bench", "run", str(video), "--rounds", "1")
    assert code == 0, err
    rows = out.splitlines()[2:]
    assert [row.rsplit(maxsplit=7)[0] for row in rows] == list(CONTENDERS)
    for row in rows:
        count, median, _, cpu, cores, peak, ratio = row.rsplit(maxsplit=7)[1:]
        assert int(count) == len(frames) and float(median) > 0 and float(peak) > 0 and float(ratio) > 0
        # each contender works for at least part of its wall time and on at most the machine's cores
        assert float(cpu) > 0 and 0 < float(cores) <= (os.cpu_count() or 1) + 0.5
    assert rows[2].split()[-1] == "1.00"  # mog2 against itself


@pytest.mark.parametrize(
    ("argv", "status", "fragments"),
    [
        (["{missing}"], 1, ["video not found"]),
        (["{missing}", "--rounds", "0"], 2, ["--rounds"]),
    ],
)
def test_bad_input_is_one_line(
    argv: list[str], status: int, fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.format(missing=tmp_path / "missing.mp4") for a in argv]
    code, out, err = run_cli(capsys, "bench", "run", *args)
    assert code == status
    assert out == ""
    assert_one_line_error(err, *fragments)
