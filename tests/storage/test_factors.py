"""Factors U, s, Vt persisted as Zarr, reopened, refused when incomplete or stale, reused."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import zarr

from storage.errors import (
    FingerprintMismatchError,
    InvalidParameterError,
    StoreExistsError,
    StoreIncompleteError,
    StoreNotFoundError,
)
from storage.factor_lookup import answering_factors, find_reusable_factors, list_factors
from storage.factors import (
    StoredFactors,
    check_factors_name,
    default_factors_name,
    factors_chunks,
    open_factors,
    write_factors,
)
from storage.store import create_store
from tests.helpers import raise_if_dask_computes

FINGERPRINT = "ab" * 32
OTHER_FINGERPRINT = "cd" * 32
P, T = 300, 40


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store.zarr"
    create_store(path)
    return path


def _factors(rank: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((P, rank)).astype(np.float32)
    s = np.sort(rng.uniform(1, 100, rank))[::-1].astype(np.float32)
    vt = rng.standard_normal((rank, T)).astype(np.float32)
    return u, s, vt


def _attrs(method: str = "randomized", *, fingerprint: str = FINGERPRINT, **extra: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {"method": method, "video_fingerprint": fingerprint, "wall_time_s": 1.5}
    if method == "randomized":
        attrs.update(power_iters=4, oversample=20, seed=0)
    attrs.update(extra)
    return attrs


def _write(store: Path, name: str, rank: int, **attrs: Any) -> None:
    u, s, vt = _factors(rank)
    write_factors(store, name=name, U=u, s=s, Vt=vt, attrs=_attrs(**attrs))


def _failing(shape: tuple[int, ...], error: BaseException) -> da.Array:
    """A dask array whose second chunk raises ``error`` when computed."""

    def fail(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:  # type: ignore[type-arg]
        assert block_info is not None
        if block_info[0]["chunk-location"][0] == 1:
            raise error
        return block

    return da.ones(shape, dtype=np.float32, chunks=(shape[0] // 2, shape[1])).map_blocks(
        fail, dtype=np.float32
    )


# round trip -----------------------------------------------------------------------------


def test_round_trip(store: Path) -> None:
    u, s, vt = _factors(6)
    lazy_u = da.from_array(u.astype(np.float64), chunks=(70, 6))  # converted to float32
    write_factors(
        store,
        name="randomized-k6",
        U=lazy_u,
        s=s,
        Vt=da.from_array(vt, chunks=(6, 7)),
        attrs=_attrs(
            peak_worker_memory=np.int64(123), versions={"numpy": np.__version__}, ratio=np.float32(0.5)
        ),
    )
    factors = open_factors(store, "randomized-k6", expected_fingerprint=FINGERPRINT)
    assert isinstance(factors, StoredFactors)
    assert (factors.name, factors.rank, factors.method) == ("randomized-k6", 6, "randomized")
    assert factors.video_fingerprint == FINGERPRINT
    for stored, original in ((factors.U, u), (factors.s, s), (factors.Vt, vt)):
        assert isinstance(stored, da.Array)
        assert stored.dtype == np.float32
        np.testing.assert_array_equal(stored.compute(), original)
    attrs = factors.attrs
    assert attrs["complete"] is True
    assert attrs["rank"] == 6 and attrs["n_pixels"] == P and attrs["n_frames"] == T
    assert attrs["peak_worker_memory"] == 123 and attrs["ratio"] == 0.5
    assert (attrs["power_iters"], attrs["oversample"], attrs["seed"]) == (4, 20, 0)
    assert attrs["versions"] == {"numpy": np.__version__}  # given: kept as is


def test_versions_are_recorded_when_not_given(store: Path) -> None:
    _write(store, "v", 1)
    versions = open_factors(store, "v").attrs["versions"]
    assert versions["zarr"] == zarr.__version__ and versions["dask"] == dask.__version__


def test_arrays_have_dimension_names_and_aligned_chunks(store: Path) -> None:
    _write(store, "x", 3)
    group = zarr.open_group(store, mode="r")["factors/x"]
    assert isinstance(group, zarr.Group)
    assert group["U"].metadata.dimension_names == ("pixel", "component")
    assert group["s"].metadata.dimension_names == ("component",)
    assert group["Vt"].metadata.dimension_names == ("component", "frame")
    factors = open_factors(store, "x")
    for key, array in (("U", factors.U), ("s", factors.s), ("Vt", factors.Vt)):
        assert group[key].dtype == np.float32
        assert group[key].chunks == tuple(c[0] for c in array.chunks)  # one dask chunk per zarr chunk


def test_factors_chunks() -> None:
    assert factors_chunks(76800, 794, 10) == {"U": (76800, 10), "s": (10,), "Vt": (10, 794)}
    big = factors_chunks(10**8, 10**6, 100, chunk_bytes=32 * 2**20)
    assert big["U"] == (83886, 100) and big["Vt"] == (100, 83886)


def test_write_is_done_by_the_current_distributed_client(store: Path) -> None:
    from distributed import Client, LocalCluster

    u, s, vt = _factors(4)
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster,
        Client(cluster),
    ):
        write_factors(
            store,
            name="dist",
            U=da.from_array(u, chunks=(100, 4)),
            s=da.from_array(s),
            Vt=da.from_array(vt, chunks=(4, 10)),
            attrs=_attrs(),
        )
    np.testing.assert_array_equal(open_factors(store, "dist").U.compute(), u)


def test_factors_in_memory_are_written_from_this_process_without_a_graph(store: Path) -> None:
    """Plates of many windows are numpy arrays: a graph would carry them to the scheduler
    (distributed warns past 10 MB); written here, no warning, the same values."""
    from distributed import Client, LocalCluster

    rank = -(-(12 * 2**20) // (4 * P))  # U of at least 12 MiB
    u, s, vt = _factors(rank)
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster,
        Client(cluster),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("error")  # "Sending large graph" would raise here
        write_factors(store, name="plates", U=u, s=s.astype(np.float64), Vt=vt, attrs=_attrs())
    factors = open_factors(store, "plates")
    np.testing.assert_array_equal(factors.U.compute(), u)
    np.testing.assert_array_equal(factors.Vt.compute(), vt)
    assert factors.s.dtype == np.float32 and np.array_equal(factors.s.compute(), s)


def test_open_factors_is_lazy(store: Path) -> None:
    _write(store, "lazy", 2)
    with raise_if_dask_computes():
        factors = open_factors(store, "lazy")
        assert factors.rank == 2


def test_default_factors_name() -> None:
    assert default_factors_name("randomized", 10) == "randomized-k10"
    assert default_factors_name("exact", 3) == "exact-k3"


# refusals -------------------------------------------------------------------------------


def test_complete_factors_are_kept_unless_overwrite(store: Path) -> None:
    _write(store, "same", 2)
    with pytest.raises(StoreExistsError, match="pass --force"):
        _write(store, "same", 3)
    assert open_factors(store, "same").rank == 2
    u, s, vt = _factors(3, seed=5)
    write_factors(store, name="same", U=u, s=s, Vt=vt, attrs=_attrs(), overwrite=True)
    replaced = open_factors(store, "same")
    assert replaced.rank == 3
    np.testing.assert_array_equal(replaced.U.compute(), u)


def test_check_factors_name_refuses_before_any_work(store: Path) -> None:
    check_factors_name(store, "free")  # nothing there yet
    with pytest.raises(InvalidParameterError, match="--name must be"):
        check_factors_name(store, "bad/name")
    _write(store, "taken", 2)
    with pytest.raises(StoreExistsError, match="factors 'taken' already exist"):
        check_factors_name(store, "taken")
    check_factors_name(store, "taken", overwrite=True)
    _, s, vt = _factors(3)
    with pytest.raises(RuntimeError):
        write_factors(store, name="broken", U=_failing((P, 3), RuntimeError("x")), s=s, Vt=vt, attrs=_attrs())
    check_factors_name(store, "broken")  # an incomplete group may be replaced


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_a_failed_write_is_never_complete(store: Path, error: BaseException) -> None:
    _, s, vt = _factors(3)
    with pytest.raises(type(error)):
        write_factors(store, name="broken", U=_failing((P, 3), error), s=s, Vt=vt, attrs=_attrs())
    [summary] = list_factors(store)
    assert (summary.name, summary.complete) == ("broken", False)
    with pytest.raises(StoreIncompleteError, match="incomplete"):
        open_factors(store, "broken")
    assert _find(store, method="randomized", rank=1) is None
    _write(store, "broken", 3)  # an incomplete group is replaced without overwrite
    assert open_factors(store, "broken").rank == 3


def test_fingerprint_mismatch_is_refused(store: Path) -> None:
    _write(store, "old", 2, fingerprint=OTHER_FINGERPRINT)
    with pytest.raises(FingerprintMismatchError, match="another video"):
        open_factors(store, "old", expected_fingerprint=FINGERPRINT)
    assert open_factors(store, "old").video_fingerprint == OTHER_FINGERPRINT


def test_missing_factors(store: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="no factors 'nope'"):
        open_factors(store, "nope")
    _write(store, "there", 1)
    with pytest.raises(StoreNotFoundError, match="available: there"):
        open_factors(store, "nope")


@pytest.mark.parametrize("name", ["", "a/b", "../up", ".hidden", "x" * 200, "sp ace"])
def test_bad_names_are_refused(store: Path, name: str) -> None:
    u, s, vt = _factors(1)
    with pytest.raises(InvalidParameterError, match="--name must be"):
        write_factors(store, name=name, U=u, s=s, Vt=vt, attrs=_attrs())


def test_inconsistent_factors_are_refused(store: Path) -> None:
    u, s, vt = _factors(3)
    with pytest.raises(InvalidParameterError, match="share their number of components"):
        write_factors(store, name="x", U=u, s=s[:2], Vt=vt, attrs=_attrs())
    with pytest.raises(InvalidParameterError, match=r"U \(P, k\)"):
        write_factors(store, name="x", U=u[:, 0], s=s, Vt=vt, attrs=_attrs())
    with pytest.raises(InvalidParameterError, match="need video_fingerprint"):
        write_factors(store, name="x", U=u, s=s, Vt=vt, attrs={"method": "exact"})
    with pytest.raises(InvalidParameterError, match="attrs say rank 5"):
        write_factors(store, name="x", U=u, s=s, Vt=vt, attrs=_attrs(rank=5))
    assert list_factors(store) == []


def test_a_store_without_factors(store: Path) -> None:
    assert list_factors(store) == []
    assert find_reusable_factors(store, method="exact", rank=1, video_fingerprint=FINGERPRINT) is None


def test_no_store(tmp_path: Path) -> None:
    u, s, vt = _factors(1)
    with pytest.raises(StoreNotFoundError):
        write_factors(tmp_path / "absent.zarr", name="x", U=u, s=s, Vt=vt, attrs=_attrs())


# reuse ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    rank: int
    power_iters: int = 4
    oversample: int = 20
    seed: int = 0


def _find(store: Path, **request: Any) -> str | None:
    fingerprint = request.pop("video_fingerprint", FINGERPRINT)
    found = find_reusable_factors(store, parameters=Request(**request), video_fingerprint=fingerprint)
    return None if found is None else found.name


def test_find_reusable_factors(store: Path) -> None:
    _write(store, "r10", 10)
    _write(store, "r20", 20)
    _write(store, "r30-seed1", 30, seed=1)
    _write(store, "e5", 5, method="exact")
    _write(store, "r40-other-video", 40, fingerprint=OTHER_FINGERPRINT)

    assert _find(store, method="randomized", rank=10) == "r10"
    assert _find(store, method="randomized", rank=8) == "r10"  # smallest rank that answers
    assert _find(store, method="randomized", rank=15) == "r20"
    assert _find(store, method="randomized", rank=21) is None  # r30 has another seed
    assert _find(store, method="randomized", rank=21, seed=1) == "r30-seed1"
    assert _find(store, method="randomized", rank=5, power_iters=2) is None
    assert _find(store, method="randomized", rank=5, oversample=10) is None
    assert _find(store, method="exact", rank=3, power_iters=99, seed=7) == "e5"  # exact has no options
    assert _find(store, method="exact", rank=6) is None
    assert (
        _find(store, method="randomized", rank=40, video_fingerprint=OTHER_FINGERPRINT) == "r40-other-video"
    )

    found = find_reusable_factors(
        store,
        method="randomized",
        rank=5,
        power_iters=4,
        oversample=20,
        seed=0,
        video_fingerprint=FINGERPRINT,
    )
    assert isinstance(found, StoredFactors) and found.name == "r10" and found.rank == 10
    named = find_reusable_factors(
        store, parameters=Request("randomized", 5), video_fingerprint=FINGERPRINT, name="r20"
    )
    assert named is not None and named.name == "r20"


def test_answering_factors_reads_attributes_only_and_can_ignore_the_video(store: Path) -> None:
    _write(store, "r10", 10)
    _write(store, "r40-other-video", 40, fingerprint=OTHER_FINGERPRINT)
    wanted = Request(method="randomized", rank=30)
    with raise_if_dask_computes():
        assert answering_factors(store, parameters=wanted, video_fingerprint=FINGERPRINT) is None
        found = answering_factors(store, parameters=wanted, video_fingerprint=None)
    assert found is not None and (found.name, found.rank) == ("r40-other-video", 40)
    small = answering_factors(store, parameters=Request(method="randomized", rank=5), video_fingerprint=None)
    assert small is not None and small.name == "r10"  # the smallest rank that answers
    assert answering_factors(store, parameters=wanted, video_fingerprint=None, name="r10") is None


def test_find_reusable_factors_needs_a_whole_request(store: Path) -> None:
    with pytest.raises(InvalidParameterError, match="needs power_iters, oversample, seed"):
        find_reusable_factors(store, method="randomized", rank=3, video_fingerprint=FINGERPRINT)
    with pytest.raises(InvalidParameterError, match="not both"):
        find_reusable_factors(store, parameters=Request("exact", 1), rank=3, video_fingerprint=FINGERPRINT)


def test_list_factors(store: Path) -> None:
    _write(store, "b", 2)
    _write(store, "a", 3, method="exact")
    summaries = list_factors(store)
    assert [(f.name, f.complete, f.rank, f.method) for f in summaries] == [
        ("a", True, 3, "exact"),
        ("b", True, 2, "randomized"),
    ]
