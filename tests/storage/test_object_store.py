"""Stores at s3:// URLs against a real S3-compatible server (moto's server mode on 127.0.0.1).

Covers the store's life on object storage (create, recognise, delete, ingest,
overwrite, resume) and every way the user can get object storage wrong: a bucket
that does not exist, no credentials, credentials the server refuses, an endpoint
that does not answer, s3fs not installed.  Error paths run the command line in a
fresh process, with the environment a user would have, and must end within 30 s
with one line that names what to fix.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import pytest

from storage.errors import (
    BucketNotFoundError,
    NotAVidsvdStoreError,
    StoreAccessError,
    StoreExistsError,
    StoreIncompleteError,
    StoreNotFoundError,
)
from storage.store import create_store, delete_store, open_store, store_exists, store_problem
from storage.video_array import open_video
from storage.video_ingest import ingest_videos
from tests.helpers import assert_one_line_error
from tests.s3_server import REPO, S3Server, run_cli_process, running_s3_server

ERROR_WITHIN_S = 30.0


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running_s3_server(tmp_path_factory.mktemp("aws-home")) as server:
        yield server


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """This process talks to the test server with valid credentials."""
    s3.use_in_process(monkeypatch)
    yield s3
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def bucket(s3: S3Server) -> str:
    return s3.create_bucket()


def test_store_lifecycle_on_s3(s3_env: S3Server, bucket: str) -> None:
    url = f"s3://{bucket}/deep/clip.zarr"
    assert not store_exists(url)  # probed (and, without a listings cache, not remembered)
    create_store(url)
    assert store_exists(url)
    assert "vidsvd" in open_store(url).attrs
    with pytest.raises(StoreExistsError, match="already exists"):
        create_store(url)
    assert store_problem(url) is None
    delete_store(url)
    assert not store_exists(url)
    with pytest.raises(StoreNotFoundError, match=f"no store at {url}"):
        open_store(url)


def test_foreign_objects_at_the_url_are_refused_and_kept(s3_env: S3Server, bucket: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.pipe(f"{bucket}/other/notes.txt", b"not a store")
    with pytest.raises(NotAVidsvdStoreError, match="not a vidsvd store"):
        open_store(f"s3://{bucket}/other")
    with pytest.raises(NotAVidsvdStoreError):
        delete_store(f"s3://{bucket}/other")
    assert fs.cat(f"{bucket}/other/notes.txt") == b"not a store"


def test_ingest_into_s3_equals_a_local_ingest(s3_env: S3Server, bucket: str, make_video, tmp_path) -> None:  # type: ignore[no-untyped-def]
    video, frames = make_video(n_frames=25)
    url = f"s3://{bucket}/clip.zarr"
    local = ingest_videos([video], store=tmp_path / "clip.zarr", chunk_frames=8, progress=False)
    remote = ingest_videos([video], store=url, chunk_frames=8, progress=False)
    assert remote.fingerprint == local.fingerprint
    stored = open_video(url)
    np.testing.assert_array_equal(stored.frames.compute(), frames)
    # the same chunks; the array's metadata differs by its recorded wall time
    assert stored.stored_bytes == pytest.approx(open_video(tmp_path / "clip.zarr").stored_bytes, abs=32)
    # --overwrite deletes the objects of the old store and writes a new one
    again = ingest_videos([video], store=url, chunk_frames=5, overwrite=True, progress=False)
    assert again.chunk_frames == 5
    np.testing.assert_array_equal(open_video(url).frames.compute(), frames)


def test_interrupted_ingest_into_s3_resumes_to_the_same_bytes(
    s3_env: S3Server, bucket: str, make_video
) -> None:  # type: ignore[no-untyped-def]
    video, frames = make_video(n_frames=23)
    url = f"s3://{bucket}/cut.zarr"
    reference = ingest_videos([video], store=url, chunk_frames=5, progress=False)
    # rewind to what a kill after 10 frames leaves (as tests/storage/test_video_ingest.py does locally)
    array = open_store(url, writable=True)["video"]
    attrs = dict(array.attrs)
    array.attrs.put(
        {k: v for k, v in attrs.items() if k not in ("fingerprint", "sources", "segments")}
        | {"complete": False, "progress": {"frames_written": 10, "sources_done": attrs["sources"]}}
    )
    array.resize((25, *array.shape[1:]))
    with pytest.raises(StoreIncompleteError, match="--resume"):
        open_video(url)
    resumed = ingest_videos([video], store=url, chunk_frames=5, resume=True, progress=False)
    assert resumed.resumed_from_frame == 10
    assert resumed.fingerprint == reference.fingerprint
    np.testing.assert_array_equal(open_video(url).frames.compute(), frames)


def test_store_problem_is_what_a_worker_would_report(s3_env: S3Server, bucket: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "nowhere" / "clip.zarr"
    assert store_problem(missing) == "it does not exist there"
    assert store_problem(missing, must_exist=False) == f"its folder {missing.parent} does not exist there"
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "file.txt").write_text("x")
    assert store_problem(tmp_path / "plain") == "it is not a vidsvd store there"
    assert store_problem(f"s3://{bucket}/new.zarr", must_exist=False) is None
    problem = store_problem("s3://no-such-bucket-here/new.zarr", must_exist=False)
    assert problem is not None and problem.startswith("bucket no-such-bucket-here does not exist")


def test_in_process_errors_are_typed(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BucketNotFoundError) as missing:
        open_store("s3://no-such-bucket-here/clip.zarr")
    assert isinstance(missing.value, FileNotFoundError)
    s3_env.use_in_process(monkeypatch, credentials=False)
    with pytest.raises(StoreAccessError) as refused:
        store_exists("s3://any-bucket/clip.zarr")
    assert isinstance(refused.value, PermissionError)


# --------------------------------------------------------------------------- errors, from the CLI


def _assert_quick_one_line_error(result: tuple[int, str, str, float], *fragments: str) -> None:
    status, _, stderr, seconds = result
    assert status == 1, stderr
    assert_one_line_error(stderr, *fragments)
    assert seconds < ERROR_WITHIN_S, f"took {seconds:.1f} s"


def test_missing_bucket_is_one_line_naming_bucket_and_endpoint(s3: S3Server, make_video) -> None:  # type: ignore[no-untyped-def]
    video, _ = make_video()
    expected = (f"bucket no-such-bucket does not exist at {s3.endpoint}", "create it or fix --store")
    for argv in (
        ("ingest", str(video), "--store", "s3://no-such-bucket/clip.zarr", "--quiet"),
        ("decompose", "--store", "s3://no-such-bucket/clip.zarr", "--rank", "2", "--quiet"),
        ("report", "--store", "s3://no-such-bucket/clip.zarr", "--quiet"),
    ):
        _assert_quick_one_line_error(run_cli_process(*argv, env=s3.env()), *expected)


def test_missing_credentials_are_one_line(s3: S3Server, bucket: str, make_video) -> None:  # type: ignore[no-untyped-def]
    video, _ = make_video()
    result = run_cli_process(
        "ingest", str(video), "--store", f"s3://{bucket}/clip.zarr", "--quiet", env=s3.env(credentials=False)
    )
    _assert_quick_one_line_error(
        result, f"no credentials for s3://{bucket}/clip.zarr", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
    )


def test_refused_credentials_are_one_line(s3: S3Server, bucket: str, make_video) -> None:  # type: ignore[no-untyped-def]
    video, _ = make_video()
    with s3.checking_credentials():  # the server knows no user: every key is refused
        result = run_cli_process(
            "ingest", str(video), "--store", f"s3://{bucket}/clip.zarr", "--quiet", env=s3.env()
        )
    _assert_quick_one_line_error(
        result, f"{s3.endpoint} refused access to s3://{bucket}/clip.zarr", "check AWS_ACCESS_KEY_ID"
    )


@pytest.mark.slow
def test_unreachable_endpoint_is_one_line(s3: S3Server, make_video) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    video, _ = make_video()
    result = run_cli_process(
        "ingest", str(video), "--store", "s3://any/clip.zarr", "--quiet", env=s3.env(endpoint=closed)
    )
    _assert_quick_one_line_error(result, f"cannot reach {closed}", "AWS_ENDPOINT_URL")


def test_s3fs_not_installed_is_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Run the CLI where ``import s3fs`` fails, as it does without the s3 extra."""
    code = (
        "import sys; sys.modules['s3fs'] = None; from pipelines.cli import main; "
        "raise SystemExit(main(sys.argv[1:]))"
    )
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", code, "decompose", "--store", "s3://bucket/clip.zarr", "--rank", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert_one_line_error(done.stderr, "s3://bucket/clip.zarr needs s3fs", "pip install -e '.[s3]'")
