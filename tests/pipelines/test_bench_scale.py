"""`vidsvd bench workers`: the worker-scaling benchmark, its table and its bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.bench.scale import WorkerScaling, format_worker_scaling, measure_worker_scaling
from tests.helpers import assert_one_line_error, run_cli


def test_the_table_gives_speed_up_against_the_first_row() -> None:
    rows = [
        WorkerScaling(workers=1, threads_per_worker=1, wall_time_s=12.0, peak_rss_bytes=2**30),
        WorkerScaling(workers=2, threads_per_worker=1, wall_time_s=8.0, peak_rss_bytes=3 * 2**29),
    ]
    lines = format_worker_scaling(rows).splitlines()
    assert lines[0].split() == ["workers", "threads", "wall", "s", "speed-up", "peak", "RSS", "GiB"]
    assert lines[1].split() == ["1", "1", "12.0", "1.00", "1.00"]
    assert lines[2].split() == ["2", "1", "8.0", "1.50", "1.50"]


@pytest.mark.slow
def test_scaling_runs_the_command_with_each_worker_count(
    make_video, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    video, _ = make_video(n_frames=40)
    store = tmp_path / "s.zarr"
    assert run_cli(capsys, "ingest", str(video), "--store", str(store), "--quiet")[0] == 0
    rows = measure_worker_scaling(store, worker_counts=(1, 2), repeats=1, rank=3)
    assert [(r.workers, r.threads_per_worker) for r in rows] == [(1, 1), (2, 1)]
    for row in rows:
        assert 0 < row.wall_time_s < 120
        # the command and its worker processes: each imports numpy and dask (> 50 MB)
        assert row.peak_rss_bytes > (row.workers + 1) * 50 * 2**20


@pytest.mark.parametrize(
    ("argv", "status", "fragments"),
    [
        (["--store", "{missing}"], 1, ["no store at", "vidsvd ingest"]),
        (["--store", "{missing}", "--workers", "0"], 2, ["--workers must be positive whole numbers"]),
        (["--store", "{missing}", "--workers", "1,x"], 2, ["--workers"]),
        (["--store", "{missing}", "--repeats", "0"], 2, ["--repeats"]),
    ],
)
def test_bad_input_is_one_line(
    argv: list[str], status: int, fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.format(missing=tmp_path / "missing.zarr") for a in argv]
    code, out, err = run_cli(capsys, "bench", "workers", *args)
    assert code == status
    assert out == ""
    assert_one_line_error(err, *fragments)
