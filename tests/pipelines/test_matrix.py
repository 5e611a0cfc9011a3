"""The lazy matrix view M (pixel, frame) of a stored video."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

from pipelines.matrix import frame_images, matrix_chunk_bytes, video_columns, video_matrix
from storage.errors import InvalidParameterError
from tests.helpers import raise_if_dask_computes


def _frames(n_frames: int = 10, height: int = 4, width: int = 5, *, color: bool = False) -> np.ndarray:
    rng = np.random.default_rng(0)
    shape = (n_frames, height, width, 3) if color else (n_frames, height, width)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _reference(frames: np.ndarray) -> np.ndarray:
    return frames.reshape(len(frames), -1).T.astype(np.float32)


def test_video_matrix_is_lazy() -> None:
    frames = da.from_array(_frames(), chunks=(3, 2, 5))
    with raise_if_dask_computes():
        m = video_matrix(frames)
        video_matrix(frames, frames_per_chunk=4, image_rows_per_chunk=1)
        images = frame_images(m, 4, 5)
        assert isinstance(images, da.Array)
        with pytest.raises(AssertionError, match="computed"):
            m.sum().compute()  # the guard itself works


def test_video_matrix_keeps_the_video_chunks_and_values() -> None:
    data = _frames(10, 4, 5)
    frames = da.from_array(data, chunks=(3, 4, 5))
    m = video_matrix(frames)
    assert m.shape == (20, 10)
    assert m.dtype == np.float32
    assert m.chunks == ((20,), (3, 3, 3, 1))
    np.testing.assert_array_equal(m.compute(), _reference(data))


def test_video_matrix_rechunks_frames_and_image_rows() -> None:
    data = _frames(10, 4, 5)
    frames = da.from_array(data, chunks=(3, 2, 5))  # split inside frames: regrouped
    assert video_matrix(frames).chunks == ((20,), (3, 3, 3, 1))
    by_frames = video_matrix(frames, frames_per_chunk=4)
    assert by_frames.chunks == ((20,), (4, 4, 2))
    by_rows = video_matrix(frames, frames_per_chunk=10, image_rows_per_chunk=3)
    assert by_rows.chunks == ((15, 5), (10,))
    for m in (by_frames, by_rows):
        np.testing.assert_array_equal(m.compute(), _reference(data))


def test_color_channels_are_extra_rows() -> None:
    data = _frames(6, 4, 5, color=True)
    m = video_matrix(da.from_array(data, chunks=(4, 4, 5, 3)), image_rows_per_chunk=3)
    assert m.shape == (4 * 5 * 3, 6)
    np.testing.assert_array_equal(m.compute(), _reference(data))
    np.testing.assert_array_equal(frame_images(m, 4, 5).compute(), data)


@pytest.mark.parametrize("color", [False, True])
def test_video_columns_are_the_matrix_in_uint8_as_views_of_the_chunks(color: bool) -> None:
    data = _frames(7, 4, 5, color=color)
    frames = da.from_array(data, chunks=(3, 4, 5, 3) if color else (3, 4, 5))
    with raise_if_dask_computes():
        columns = video_columns(frames)
    assert columns.dtype == np.uint8 and columns.chunks == ((data[0].size,), (3, 3, 1))
    np.testing.assert_array_equal(columns.compute(), _reference(data))
    views = columns.map_blocks(
        lambda block: np.asarray([[block.flags.f_contiguous]]), chunks=(1, 1), dtype=bool
    )
    assert views.compute().all(), "each block is its chunk transposed, not a copy"
    with pytest.raises(InvalidParameterError, match="uint8"):
        video_columns(frames.astype(np.float32))


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (da.zeros((3, 4, 5), dtype=np.float32, chunks=3), "uint8"),
        (da.zeros((3, 4), dtype=np.uint8, chunks=3), "shape"),
        (da.zeros((3, 4, 5, 2), dtype=np.uint8, chunks=3), "shape"),
        (np.zeros((3, 4, 5), dtype=np.uint8), "dask array"),
    ],
)
def test_video_matrix_refuses_what_is_not_a_stored_video(frames: object, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        video_matrix(frames)  # type: ignore[arg-type]


@pytest.mark.parametrize("option", ["frames_per_chunk", "image_rows_per_chunk"])
def test_video_matrix_refuses_chunk_sizes_below_one(option: str) -> None:
    frames = da.from_array(_frames(), chunks=(3, 4, 5))
    with pytest.raises(InvalidParameterError, match=f"{option} must be a positive integer, got 0"):
        video_matrix(frames, **{option: 0})


def test_frame_images_reshapes_columns_of_numpy_and_dask() -> None:
    data = _frames(7, 4, 5)
    m = _reference(data)
    np.testing.assert_array_equal(frame_images(m[:, 2], 4, 5), data[2])
    np.testing.assert_array_equal(frame_images(m, 4, 5), data)
    lazy = frame_images(da.from_array(m, chunks=(7, 3)), 4, 5)
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), data)


def test_frame_images_refuses_a_column_of_the_wrong_size() -> None:
    with pytest.raises(InvalidParameterError, match=r"is not a 6x4 frame"):
        frame_images(np.zeros(20), 4, 6)
    with pytest.raises(InvalidParameterError, match=r"column \(P,\) or a matrix"):
        frame_images(np.zeros((2, 2, 2)), 2, 2)


def test_matrix_chunk_bytes() -> None:
    m = video_matrix(da.from_array(_frames(10, 4, 5), chunks=(3, 4, 5)))
    assert matrix_chunk_bytes(m) == 20 * 3 * 4


def test_matrix_of_a_stored_video_matches_its_frames(tmp_path: Path, make_video) -> None:  # type: ignore[no-untyped-def]
    from storage.video_array import open_video
    from storage.video_ingest import ingest_videos

    path, _ = make_video(n_frames=25, height=24, width=32)
    store = tmp_path / "store.zarr"
    ingest_videos([path], store=store, chunk_frames=10, progress=False)
    video = open_video(store)
    m = video_matrix(video.frames)
    assert m.shape == (24 * 32, 25)
    assert m.chunks == ((24 * 32,), (10, 10, 5))
    stored = video.frames.compute()
    np.testing.assert_array_equal(m.compute(), _reference(stored))
    np.testing.assert_array_equal(frame_images(m[:, 7], 24, 32).compute(), stored[7])


def test_merged_chunks_of_whole_video_chunks() -> None:
    video = da.zeros((1200, 72, 128), dtype=np.uint8, chunks=(36, -1, -1))  # 34 chunks
    matrix = video_matrix(video, frames_per_chunk=252)
    assert matrix.chunks[1][:4] == (252, 252, 252, 252)
    assert sum(matrix.chunks[1]) == 1200


def test_merging_frames_adds_no_p2p_rechunk_and_keeps_values() -> None:
    frames = da.from_array(np.arange(40 * 6 * 5, dtype=np.uint8).reshape(40, 6, 5), chunks=(4, -1, -1))
    with dask.config.set({"array.rechunk.method": "p2p"}):  # what a large array gets under distributed
        matrix = video_matrix(frames, frames_per_chunk=12)
        assert not any("p2p" in name for name in matrix.dask.layers)
        rows = video_matrix(frames, image_rows_per_chunk=3)  # a real regrouping keeps dask's choice
        assert any("p2p" in name for name in rows.dask.layers)
    np.testing.assert_array_equal(matrix.compute(), frames.compute().reshape(40, -1).T.astype(np.float32))
