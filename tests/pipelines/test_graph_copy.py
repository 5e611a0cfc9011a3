"""Copies of a dask graph per pass: same values, new keys, and reads that wait for a gate."""

from __future__ import annotations

import threading
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import zarr
from dask.core import flatten

from pipelines.graph_copy import copy_graph, fresh_copies
from storage.errors import InvalidParameterError


class _RecordedReads:
    """An array for ``da.from_array`` that records whether the gate had opened at each read."""

    def __init__(self, values: np.ndarray, gate_open: threading.Event) -> None:
        self.values = values
        self.gate_open = gate_open
        self.shape = values.shape
        self.dtype = values.dtype
        self.ndim = values.ndim
        self.reads_before_gate = 0
        self.reads = 0

    def __getitem__(self, key: Any) -> np.ndarray:
        self.reads += 1
        if not self.gate_open.is_set():
            self.reads_before_gate += 1
        return np.asarray(self.values[key])


def _gate_array(gate_open: threading.Event) -> da.Array:
    def opened() -> np.ndarray:
        gate_open.set()
        return np.ones((1, 1), dtype=np.float32)

    return da.from_delayed(dask.delayed(opened)(), shape=(1, 1), dtype=np.float32)


def test_a_copy_computes_the_same_values_under_new_keys() -> None:
    values = np.arange(60, dtype=np.uint8).reshape(6, 10)
    array = da.from_array(values, chunks=(2, 10)) + 1
    copy = copy_graph(array, 0)
    assert not set(flatten(copy.__dask_keys__())) & set(flatten(array.__dask_keys__()))
    np.testing.assert_array_equal(copy.compute(), values + 1)


def test_reads_of_a_gated_copy_wait_for_the_gate() -> None:
    gate_open = threading.Event()
    source = _RecordedReads(np.arange(80, dtype=np.uint8).reshape(8, 10), gate_open)
    frames = da.from_array(source, chunks=(2, 10), asarray=True, fancy=False)
    copy = copy_graph(frames, 0, after=_gate_array(gate_open))
    source.reads = source.reads_before_gate = 0  # from_array read an empty slice for its meta
    with dask.config.set(scheduler="threads", num_workers=4):
        got = copy.sum(axis=1).compute()
    np.testing.assert_array_equal(got, source.values.sum(axis=1))
    assert source.reads == 4
    assert source.reads_before_gate == 0


def test_without_a_gate_reads_do_not_wait() -> None:
    gate_open = threading.Event()
    source = _RecordedReads(np.arange(80, dtype=np.uint8).reshape(8, 10), gate_open)
    frames = da.from_array(source, chunks=(2, 10), asarray=True, fancy=False)
    copy = copy_graph(frames, 0)
    source.reads = source.reads_before_gate = 0
    with dask.config.set(scheduler="sync"):
        copy.sum().compute()
    assert source.reads_before_gate == 4


def test_a_gated_copy_of_a_zarr_array_reads_it_all(tmp_path: Any) -> None:
    stored = zarr.create_array(tmp_path / "a.zarr", shape=(9, 4, 5), chunks=(3, 4, 5), dtype=np.uint8)
    stored[:] = np.arange(180, dtype=np.uint8).reshape(9, 4, 5)
    copies = fresh_copies(da.from_zarr(stored))
    gate_open = threading.Event()
    first = copies()
    second = copies(after=_gate_array(gate_open))
    assert first.name != second.name
    np.testing.assert_array_equal(second.compute(scheduler="sync"), stored[:])
    assert gate_open.is_set()


def test_a_gate_of_several_chunks_is_refused() -> None:
    frames = da.zeros((4, 4), chunks=2)
    with pytest.raises(InvalidParameterError, match="one chunk only, got 4 chunks"):
        copy_graph(frames, 0, after=da.ones((4, 4), chunks=2))
