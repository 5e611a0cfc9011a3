"""Every read notices damage: a missing chunk, a flipped bit, NaN in factors; one line, exit 1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from storage.errors import StoreDamagedError
from storage.factors import open_factors, write_factors
from storage.integrity import checked_dask_array, compressor
from storage.video_array import open_video
from storage.video_ingest import ingest_videos
from tests.helpers import REPO, assert_one_line_error, run_cli


def _chunk_files(array_dir: Path) -> list[Path]:
    return sorted(p for p in (array_dir / "c").rglob("*") if p.is_file())


@pytest.fixture
def store(make_video, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    video, _ = make_video(n_frames=30)
    location = tmp_path / "store.zarr"
    ingest_videos([video], store=location, chunk_frames=10, progress=False)
    return location


def test_chunks_carry_zstd_checksums(store: Path) -> None:
    codecs = json.loads((store / "video" / "zarr.json").read_text())["codecs"]
    assert {"name": "zstd", "configuration": {"level": 3, "checksum": True}} in codecs
    time_codecs = json.loads((store / "time" / "zarr.json").read_text())["codecs"]
    assert {"name": "zstd", "configuration": {"level": 3, "checksum": True}} in time_codecs


def test_a_video_recorded_at_another_level_reads_the_same(store: Path) -> None:
    """Stores of earlier versions (their video at level 5) open, check and read unchanged."""
    frames = open_video(store).frames.compute()
    meta_path = store / "video" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    for codec in meta["codecs"]:
        if codec["name"] == "zstd":
            codec["configuration"]["level"] = 5
    meta_path.write_text(json.dumps(meta))
    reopened = open_video(store)
    np.testing.assert_array_equal(reopened.frames.compute(), frames)


def test_a_missing_video_chunk_is_refused_on_open(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _chunk_files(store / "video")[1].unlink()
    with pytest.raises(StoreDamagedError, match="1 of its 3 chunks are missing"):
        open_video(store)
    status, _, err = run_cli(capsys, "decompose", "--store", str(store), "--rank", "2")
    assert status == 1
    assert_one_line_error(err, "is damaged", "--overwrite")


@pytest.mark.parametrize("seed", range(20))
def test_a_flipped_bit_in_a_video_chunk_never_gives_wrong_frames(store: Path, seed: int) -> None:
    """Damage is an error; a bit that zstd never reads (padding of an entropy-coded
    stream: seen at zstd level 4 for one of these seeds) changes nothing read, and the
    content checksum proves the frames are the stored ones."""
    clean = open_video(store).frames[:10].compute(scheduler="sync")
    chunk = _chunk_files(store / "video")[0]
    data = bytearray(chunk.read_bytes())
    rng = np.random.default_rng(seed)
    position = int(rng.integers(0, len(data)))
    data[position] ^= 1 << int(rng.integers(0, 8))
    chunk.write_bytes(bytes(data))
    try:
        frames = open_video(store).frames[:10].compute(scheduler="sync")
    except StoreDamagedError as exc:
        assert re.search(r"the video in .* is damaged", str(exc))
    else:
        np.testing.assert_array_equal(frames, clean)


def test_most_flipped_bits_in_a_video_chunk_are_errors(store: Path) -> None:
    chunk = _chunk_files(store / "video")[0]
    original = chunk.read_bytes()
    rng = np.random.default_rng(0)
    errors = 0
    for _ in range(20):
        data = bytearray(original)
        data[int(rng.integers(0, len(data)))] ^= 1 << int(rng.integers(0, 8))
        chunk.write_bytes(bytes(data))
        try:
            open_video(store).frames[:10].compute(scheduler="sync")
        except StoreDamagedError:
            errors += 1
    assert errors >= 15  # measured: 20 of these 20; 19 of the 20 seeds above


def test_a_chunk_lost_after_opening_is_refused_when_read(store: Path) -> None:
    frames = open_video(store).frames
    _chunk_files(store / "video")[2].unlink()
    with pytest.raises(
        StoreDamagedError, match=r"the video in .* is damaged: its chunk at \[20:30.* is missing"
    ):
        frames.compute(scheduler="sync")


def test_a_chunk_of_another_size_is_refused_not_padded(store: Path) -> None:
    """A valid, checksummed zstd frame of fewer bytes than a chunk (another array's chunk
    copied over this one) must not leave the rest of the chunk unset."""
    chunk = _chunk_files(store / "video")[1]
    chunk.write_bytes(_zstd_frame(bytes(1000)))
    with pytest.raises(StoreDamagedError, match=r"chunk at \[10:20.* holds 1000 bytes, not the"):
        open_video(store).frames[10:20].compute(scheduler="sync")


def _zstd_frame(data: bytes) -> bytes:
    from numcodecs import Zstd

    return bytes(Zstd(level=3, checksum=True).encode(data))


def test_whole_chunks_are_decompressed_without_zarrs_indexing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vidsvd's arrays (plain zstd) read a whole chunk at a time, edge chunks too, without
    zarr's copy; arrays of other codecs read through zarr, and both give the stored values."""
    values = np.arange(25 * 3 * 5, dtype=np.float32).reshape(25, 3, 5)
    plain = zarr.create_array(tmp_path / "plain.zarr", shape=values.shape, chunks=(10, 3, 5),
                              dtype=np.float32, compressors=compressor())  # fmt: skip
    other = zarr.create_array(tmp_path / "gzip.zarr", shape=values.shape, chunks=(10, 3, 5),
                              dtype=np.float32, compressors=zarr.codecs.GzipCodec())  # fmt: skip
    plain[...] = values
    other[...] = values
    lazy_plain = checked_dask_array(plain, what="plain", fix="rewrite it")
    lazy_other = checked_dask_array(other, what="gzip", fix="rewrite it")
    np.testing.assert_array_equal(lazy_other.compute(scheduler="sync"), values)

    def no_indexing(self: zarr.Array, key: object) -> None:
        raise AssertionError("read through zarr's indexing")

    monkeypatch.setattr(zarr.Array, "__getitem__", no_indexing)
    read = lazy_plain.compute(scheduler="sync")
    np.testing.assert_array_equal(read, values)
    assert read.dtype == np.float32
    with pytest.raises(AssertionError, match="zarr's indexing"):
        lazy_other.compute(scheduler="sync")


def test_chunks_read_from_the_store_cannot_be_changed_in_place(tmp_path: Path) -> None:
    """The in-process worker hands its arrays to the caller uncopied: no one may write into them."""
    values = np.arange(25 * 3 * 5, dtype=np.float32).reshape(25, 3, 5)
    for codecs in (compressor(), zarr.codecs.GzipCodec()):  # read whole, or through zarr
        array = zarr.create_array(tmp_path / f"{type(codecs).__name__}.zarr", shape=values.shape,
                                  chunks=(10, 3, 5), dtype=np.float32, compressors=codecs)  # fmt: skip
        array[...] = values
        lazy = checked_dask_array(array, what="it", fix="rewrite it")
        writeable = lazy.map_blocks(_writeable, meta=np.empty((0, 0, 0), dtype=bool))
        assert not writeable.compute(scheduler="sync").any()  # whole chunks and the edge chunk
        np.testing.assert_array_equal(lazy.compute(scheduler="sync"), values)


def _writeable(block: np.ndarray) -> np.ndarray:
    """Whether a task may write into its chunk of the store, for each value (it may not)."""
    with pytest.raises(ValueError, match="read-only"):
        block += 1
    return np.full(block.shape, block.flags.writeable)


def test_damaged_factors_are_refused(store: Path) -> None:
    video = open_video(store)
    rng = np.random.default_rng(0)
    p, t = video.height * video.width, video.n_frames
    write_factors(
        store,
        name="f",
        U=rng.standard_normal((p, 2)),
        s=np.array([2.0, 1.0]),
        Vt=rng.standard_normal((2, t)),
        attrs={"method": "randomized", "video_fingerprint": video.fingerprint},
    )
    assert open_factors(store, "f").rank == 2
    _chunk_files(store / "factors" / "f" / "U")[0].unlink()
    with pytest.raises(StoreDamagedError, match=r"U of factors 'f'.*missing.*--force"):
        open_factors(store, "f")


def test_factors_holding_nan_are_refused_by_separate_report_and_apply(
    store: Path, make_video, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    video = open_video(store)
    p, t = video.height * video.width, video.n_frames
    u = np.ones((p, 1)) / np.sqrt(p)
    u[5, 0] = np.nan
    write_factors(
        store,
        name="nan",
        U=u,
        s=np.array([1.0]),
        Vt=np.ones((1, t)),
        attrs={"method": "randomized", "video_fingerprint": video.fingerprint},
    )
    cluster = ("--workers", "1", "--threads-per-worker", "1")
    for argv in (
        ("separate", "--store", str(store), "--factors", "nan", "--out", str(tmp_path / "o"), *cluster),
        ("report", "--store", str(store), "--factors", "nan", "--out", str(tmp_path / "o"), *cluster),
        ("apply", make_video("new.mkv", n_frames=5)[0].as_posix(), "--store", str(store), "--factors", "nan",
         "--out", str(tmp_path / "a")),
    ):  # fmt: skip
        status, _, err = run_cli(capsys, *argv, "--quiet")
        assert status == 1, argv
        assert_one_line_error(err, "factors 'nan' hold NaN or infinite values in U", "--force --name nan")


def test_damaged_factors_read_on_the_workers_are_one_line_from_the_whole_process_group(store: Path) -> None:
    """The embedded workers do not log the failed task's traceback under vidsvd's one line."""
    assert run_quietly("decompose", "--store", str(store), "--rank", "2", "--name", "f").returncode == 0
    chunk = _chunk_files(store / "factors" / "f" / "U")[0]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x10
    chunk.write_bytes(bytes(data))
    done = run_quietly("separate", "--store", str(store), "--factors", "f", "--out", str(store.parent / "o"))
    assert done.returncode == 1
    assert_one_line_error(done.stderr, "U of factors 'f'", "is damaged", "does not decompress")


def run_quietly(*argv: str) -> subprocess.CompletedProcess[str]:
    """``vidsvd ARGV --quiet`` on a one-worker embedded cluster, in a process of its own."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            *argv,
            "--quiet",
            "--workers",
            "1",
            "--threads-per-worker",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
