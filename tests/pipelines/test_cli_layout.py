"""The command line: constants spelled for a fast --help equal the library's, one exit-status table."""

from __future__ import annotations

import argparse
import errno
import gc
import subprocess
import sys
from pathlib import Path

import pytest

import pipelines.cli
from cluster.batch_options import SYSTEMS
from cluster.errors import BatchSubmitError, InvalidClusterOptionError, SchedulerUnreachableError
from pipelines.cli import build_parser, console_main
from pipelines.cli.cluster_flags import BATCH_SYSTEMS
from pipelines.cli.evaluate import BASELINE_FRAMES as HELP_BASELINE_FRAMES
from pipelines.cli.exit_status import environment_fault, exit_status
from pipelines.cli.svd_flags import DEFAULT_OVERSAMPLE, DEFAULT_POWER_ITERS
from pipelines.decompose import DEFAULT_OVERSAMPLE as LIBRARY_OVERSAMPLE
from pipelines.decompose import DEFAULT_POWER_ITERS as LIBRARY_POWER_ITERS
from pipelines.steps.evaluate import BASELINE_FRAMES as LIBRARY_BASELINE_FRAMES
from storage.errors import (
    InvalidParameterError,
    StoreDamagedError,
    StoreNotFoundError,
    TruthMismatchError,
    VidsvdError,
)
from storage.video_encoder import VideoEncodeError
from tests.helpers import REPO, assert_one_line_error, run_cli


def test_help_constants_equal_the_library() -> None:
    assert tuple(sorted(SYSTEMS)) == BATCH_SYSTEMS
    assert (DEFAULT_POWER_ITERS, DEFAULT_OVERSAMPLE) == (LIBRARY_POWER_ITERS, LIBRARY_OVERSAMPLE)
    assert HELP_BASELINE_FRAMES == LIBRARY_BASELINE_FRAMES


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidParameterError("bad value"), 2),
        (InvalidClusterOptionError("bad flag"), 2),
        (StoreNotFoundError("no store"), 1),
        (TruthMismatchError("frame 900 of 800"), 1),
        (StoreDamagedError("NaN"), 1),
        (VideoEncodeError("ffmpeg failed"), 1),
        (SchedulerUnreachableError("nobody"), 1),
        (BatchSubmitError("refused"), 1),
        (RuntimeError("a bug"), None),
    ],
)
def test_one_exit_status_table(error: BaseException, status: int | None) -> None:
    assert exit_status(error) == status
    if status is not None:
        assert isinstance(error, VidsvdError)


@pytest.mark.parametrize(
    ("error", "fragments"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "s.zarr/factors/f/U/c/0/0"),
         ("no space left on the device (s.zarr/factors/f/U/c/0/0)", "free space, then rerun")),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), ("no space left on the device;",)),
        (PermissionError(errno.EACCES, "Permission denied", "out/report.json"),
         ("refused a write (out/report.json): Permission denied", "make it writable")),
        (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x"), ("Read-only file system",)),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "x"), None),
        (OSError("no errno"), None),
        (ValueError("a bug"), None),
    ],
)  # fmt: skip
def test_a_full_disk_or_refused_write_is_one_line_not_a_traceback(
    error: BaseException, fragments: tuple[str, ...] | None
) -> None:
    message = environment_fault(error)
    if fragments is None:
        assert message is None
        return
    assert message is not None and "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_building_the_parser_imports_no_dask() -> None:
    """``--help`` answers without importing dask, distributed or zarr."""
    code = (
        "import sys; from pipelines.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('dask', 'distributed', 'zarr') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == "[]"


def test_asking_which_factors_answer_imports_no_dask() -> None:
    """decompose asks the store before it imports dask, so that its workers start meanwhile."""
    code = (
        "import sys; import storage.factor_lookup, storage.writer_lock, storage.store; "
        "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == "[]"


def test_truth_beyond_the_last_frame_is_a_bad_input_not_a_usage_error(
    tmp_path: Path, make_video, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    from storage.truth import TruthMaskWriter

    video, frames = make_video(n_frames=6)
    store = tmp_path / "store.zarr"
    assert run_cli(capsys, "ingest", str(video), "--store", str(store), "--quiet")[0] == 0
    truth = TruthMaskWriter(tmp_path / "truth", n_frames=20)
    truth.add(12, (frames[0] > 200).astype("uint8") * 255)
    truth.finish()
    status, _, err = run_cli(capsys, "evaluate", "--store", str(store), "--truth", str(tmp_path / "truth"))
    assert status == 1
    assert_one_line_error(err, "ground truth names frame 12 but the store has 6 frames")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_cli(capsys, "--version")
    assert status == 0
    assert out.startswith("vidsvd ")


def test_the_executable_exits_with_the_commands_status_and_skips_the_last_collection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pipelines.cli, "main", lambda: 3)
    try:
        with pytest.raises(SystemExit) as exited:
            console_main()
        assert exited.value.code == 3
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_the_installed_command_is_the_executable_entry() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'vidsvd = "pipelines.cli:console_main"' in pyproject
    run = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "decompose", "--store", str(REPO / "no-such-store"), "--rank", "1"],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 1
    assert_one_line_error(run.stderr, "no-such-store")


def test_every_option_of_every_command_has_a_help_text() -> None:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = [
        f"{name} {'/'.join(action.option_strings)}"
        for name, command in commands.choices.items()
        for action in command._actions
        if action.option_strings and not action.help
    ]
    assert not missing, missing


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("run", "clip.mp4", "--outt", "x"), "vidsvd run: error: unknown option --outt; did you mean --out?"),
        (("run", "clip.mp4", "--out", "x", "--rnak", "3"), "unknown option --rnak; did you mean --rank?"),
        (("decompose", "--store", "s.zarr", "--rank", "3", "--forse"), "vidsvd decompose: error: unknown"),
        (("ingest", "clip.mp4", "--store", "s.zarr", "--zzz"), "unknown option --zzz (see `vidsvd ingest"),
    ],
)
def test_an_unknown_option_names_its_command_and_the_closest_option(
    argv: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before argparse's own complaints (a missing --out), and without touching anything."""
    status, _, err = run_cli(capsys, *argv)
    assert status == 2
    assert_one_line_error(err, message)


def test_abbreviations_and_values_that_look_like_options_still_parse(tmp_path: Path) -> None:
    argv = [
        "run",
        "--ou",
        str(tmp_path),
        "--cluster",
        "slurm",
        "--job-extra=--constraint=x",
        "--",
        "-odd.mp4",
    ]
    args = build_parser().parse_args(argv)
    assert args.out == str(tmp_path) and args.job_extra == ["--constraint=x"]
    assert args.videos == ["-odd.mp4"]
