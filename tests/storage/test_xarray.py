"""Stores are xarray-ready: every array opens with ``xarray.open_zarr``, named and timed, no warning."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from pipelines.cli import main
from storage.consolidated import consolidate
from storage.derived import open_derived
from storage.errors import StoreIncompleteError
from storage.video_array import open_video
from storage.writer_lock import writer_lock

CLUSTER = ("--workers", "1", "--threads-per-worker", "1")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with a video, SVD and robust factors, masks and the stored foreground."""
    from pipelines.synthetic import SceneSpec, write_scene

    folder = tmp_path_factory.mktemp("xarray")
    video, location = folder / "scene.mp4", folder / "s.zarr"
    write_scene(SceneSpec(width=48, height=32, n_frames=40, fps=8.0, n_objects=1, seed=3), video)
    assert main(["ingest", str(video), "--store", str(location), "--quiet"]) == 0
    assert main(["decompose", "--store", str(location), "--rank", "3", "--quiet", *CLUSTER]) == 0
    argv = ["separate", "--store", str(location), "--out", str(folder / "out"), "--foreground", "--quiet"]
    assert main([*argv, *CLUSTER]) == 0
    return location


def _root_json(store: Path) -> dict[str, object]:
    loaded = json.loads((store / "zarr.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_every_array_opens_with_xarray_without_a_warning(store: Path) -> None:
    video = open_video(store)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # consolidated metadata: no fallback warning
        frames = xr.open_zarr(store)
        factors = {name: xr.open_zarr(store, group=f"factors/{name}") for name in ("exact-k3", "robust")}
    assert set(frames.data_vars) == {"video", "masks", "foreground"}
    for name in frames.data_vars:
        assert frames[name].dims == ("frame", "y", "x")
        stored = zarr.open_array(store / name, mode="r")[...]
        np.testing.assert_array_equal(frames[name].values, stored)
    # the frames' time in seconds, a coordinate of every frame-indexed array
    np.testing.assert_allclose(frames["time"].values, np.arange(video.n_frames) / video.fps)
    assert frames["time"].attrs["units"] == "s"
    assert frames.swap_dims(frame="time").video.sel(time=1.0).shape == (video.height, video.width)
    for name, group in factors.items():
        assert group["U"].dims == ("pixel", "component") and group["Vt"].dims == ("component", "frame")
        assert group.attrs["complete"] is True, name
        # the README's way to see a column of U as an image
        image = group["U"].isel(component=0).values.reshape(frames.sizes["y"], frames.sizes["x"])
        assert image.shape == (video.height, video.width) and np.isfinite(image).all()


def test_a_writer_drops_the_consolidated_metadata_while_it_writes(store: Path, tmp_path: Path) -> None:
    """A writer never leaves a snapshot of what it was changing: killed, there is none."""
    copy = tmp_path / "s.zarr"
    shutil.copytree(store, copy)
    assert "consolidated_metadata" in _root_json(copy)
    with writer_lock(copy, step="test"):
        assert "consolidated_metadata" not in _root_json(copy)  # dropped as the lock is taken
        masks = zarr.open_array(copy / "masks", mode="r+", use_consolidated=False)
        masks.update_attributes({"complete": False})  # a write in progress
        # what a reader sees if the writer is killed now: the arrays' own metadata
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert xr.open_zarr(copy).masks.attrs["complete"] is False
        assert any("consolidated" in str(w.message) for w in caught)
    # the block ended: a snapshot of what is there, the interrupted array saying so
    snapshot = _root_json(copy)["consolidated_metadata"]
    assert isinstance(snapshot, dict) and snapshot["metadata"]["masks"]["attributes"]["complete"] is False
    with pytest.raises(RuntimeError, match="failed"), writer_lock(copy, step="test"):
        raise RuntimeError("a step failed")
    assert "consolidated_metadata" in _root_json(copy)  # also after an error


def test_vidsvd_reads_the_arrays_own_metadata_not_a_stale_snapshot(store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "s.zarr"
    shutil.copytree(store, copy)
    consolidate(copy)
    # the masks' metadata changes behind the snapshot's back (a writer that bypassed vidsvd)
    masks = zarr.open_array(copy / "masks", mode="r+", use_consolidated=False)
    masks.update_attributes({"complete": False})
    assert json.loads((copy / "zarr.json").read_text())["consolidated_metadata"]["metadata"]["masks"][
        "attributes"
    ]["complete"]
    with pytest.raises(StoreIncompleteError, match=r"masks in .* is incomplete"):
        open_derived(copy, "masks")  # refused, whatever the snapshot says
