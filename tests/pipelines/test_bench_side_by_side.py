"""`vidsvd bench decompose`: vidsvd against naive dask and scikit-learn, its table and bad input."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pipelines.bench.side_by_side import Contender, Floors, format_comparison, startup_note
from tests.helpers import assert_one_line_error, run_cli


def test_the_table_gives_ratios_to_vidsvd_and_the_floors() -> None:
    contenders = [
        Contender(name="vidsvd", wall_times_s=(10.0, 12.0, 11.0), peak_rss_bytes=2**30, max_s_error=None),
        Contender(name="dask", wall_times_s=(30.0, 36.0, 33.0), peak_rss_bytes=2**31, max_s_error=2e-4),
    ]
    floors = Floors(pixels=100, frames=50, read_s=1.0, gemm_gflops=100.0, reads=4, flops=2e11)
    lines = format_comparison(contenders, floors).splitlines()
    assert lines[0].startswith("M: 100 pixels x 50 frames; medians of 3 alternating rounds")
    assert lines[2].split() == ["vidsvd", "11.0", "10.0,", "12.0,", "11.0", "1.00", "1.00", "-"]
    assert lines[3].split() == ["dask", "33.0", "30.0,", "36.0,", "33.0", "2.00", "3.00", "2.0e-04"]
    # 4 reads of 1 s and 2 s of arithmetic: 6 s, and vidsvd's 11 s is 1.8x that
    assert (
        "(4 reads: 4.0 s)" in lines[4] and ": 2.0 s;" in lines[4] and "vidsvd is 1.8x their sum" in lines[4]
    )


def test_the_columns_stay_apart_with_many_rounds() -> None:
    """Five rounds of 3.6 s once ran into the median column ("3.63.6, 3.4, ...")."""
    contenders = [
        Contender(
            name="vidsvd", wall_times_s=(3.6, 3.4, 3.4, 3.7, 3.6), peak_rss_bytes=2**29, max_s_error=None
        ),
        Contender(name="dask", wall_times_s=(131.0,) * 7, peak_rss_bytes=2**30, max_s_error=1e-4),
    ]
    floors = Floors(pixels=100, frames=50, read_s=0.1, gemm_gflops=100.0, reads=4, flops=2e10)
    lines = format_comparison(contenders, floors).splitlines()
    assert lines[2].split()[:3] == ["vidsvd", "3.6", "3.6,"]
    assert lines[3].split()[:3] == ["dask", "131.0", "131.0,"]
    header = lines[1]
    assert header.index("median s") + len("median s") < header.index("runs s")
    # every row's columns line up under the header's
    assert {len(line) for line in lines[1:4]} == {len(header)}


@pytest.mark.slow
def test_the_benchmark_runs_all_three_on_one_store(
    make_video, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    video, _ = make_video(n_frames=60)
    store = tmp_path / "s.zarr"
    assert run_cli(capsys, "ingest", str(video), "--store", str(store), "--quiet")[0] == 0
    code, out, err = run_cli(capsys, "bench", "decompose", "--store", str(store), "--rounds", "1")
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:5]}
    assert set(rows) == {"vidsvd", "dask", "sklearn"}
    for name in ("dask", "sklearn"):  # the same top 10 singular values as vidsvd's factors
        assert float(rows[name][-1]) < 1e-2
    assert "floors: one threaded read of M" in out
    assert ("note: xarray is installed here" in out) == (importlib.util.find_spec("xarray") is not None)


@pytest.mark.parametrize(
    ("argv", "status", "fragments"),
    [
        (["--store", "{missing}"], 1, ["no store at", "vidsvd ingest"]),
        (["--store", "{missing}", "--rounds", "0"], 2, ["--rounds"]),
    ],
)
def test_bad_input_is_one_line(
    argv: list[str], status: int, fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.format(missing=tmp_path / "missing.zarr") for a in argv]
    code, out, err = run_cli(capsys, "bench", "decompose", *args)
    assert code == status
    assert out == ""
    assert_one_line_error(err, *fragments)


def test_the_table_says_when_dask_imports_xarray_with_itself() -> None:
    note = startup_note(installed=lambda module: module == "xarray")
    assert note is not None and "xarray" in note and "pandas" in note and "pip install -e ." in note
    assert startup_note(installed=lambda module: False) is None
