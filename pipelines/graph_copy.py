"""Independent copies of a dask graph: one per pass of an SVD over M.

The randomized SVD reads M several times; when M is not kept in memory, each pass
must be its own computation under new keys, or dask would hold the whole of M
between passes.  :func:`copy_graph` renames every key of a graph.

It uses ``dask._task_spec`` (the task objects of dask's graphs since 2025.1, the
oldest dask vidsvd supports): a private module, so its import is checked here once,
and a dask without it gets a one-line error naming the version to install.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
from dask.base import tokenize
from dask.core import flatten

from storage.errors import InvalidParameterError

try:
    from dask._task_spec import DataNode, Task, TaskRef, convert_legacy_graph
except ImportError:  # pragma: no cover - only with a dask older than the supported range
    DataNode = Task = TaskRef = convert_legacy_graph = None

__all__ = ["copy_graph", "fresh_copies", "has_p2p_layers"]


def fresh_copies(matrix: da.Array) -> Callable[..., da.Array]:
    """Return a function giving a new, independent copy of M's graph on each call.

    The function takes ``after=`` as :func:`copy_graph` does.
    """
    counter = itertools.count()
    return lambda *, after=None: copy_graph(matrix, next(counter), after=after)


def copy_graph(array: da.Array, tag: int, *, after: da.Array | None = None) -> da.Array:
    """The same computation as ``array`` under new keys, sharing no task with it.

    With ``after`` (a dask array of one chunk), every literal input of the copy (a
    Zarr array handle, an in-memory array) is reached through a task that waits for
    that chunk, so none of the copy's reads starts before it is computed.  A pass
    over M that needs the previous pass's basis then cannot read its chunks while
    the basis is being orthonormalised, where they would pile up in the workers'
    memory with nothing to consume them (up to 2 GB of 720p, measured).

    Like :func:`dask.graph_manipulation.clone`, which cannot be used here: it leaves
    the old keys inside the ``Task`` objects of materialized layers (rechunks among
    them), and dask's task fusion then fails with "Cannot fuse tasks with multiple
    outputs" (dask/dask#12455, open in 2026.8).  This copy rebuilds the low-level
    graph node by node with :meth:`GraphNode.substitute`, which renames every key
    and every reference to one.  Literal data in the graph (``DataNode``: an
    in-memory array, a Zarr array handle) is shared, not copied.
    """
    if convert_legacy_graph is None:  # pragma: no cover - see the module's docstring
        raise InvalidParameterError(
            f"dask {dask.__version__} lacks the task objects vidsvd copies graphs with; "
            "install dask>=2025.1 (pip install -e .)"
        )
    suffix = f"pass{tag}-{tokenize(array.name, tag)[:8]}"
    graph = convert_legacy_graph(dict(array.__dask_graph__()))
    renamed = {
        key: _renamed_key(key, suffix) for key, node in graph.items() if not isinstance(node, DataNode)
    }
    copied = {
        renamed.get(key, key): node if key not in renamed else node.substitute(renamed, key=renamed[key])
        for key, node in graph.items()
    }
    if after is not None:
        copied = _gated(copied, after, suffix=suffix)
    name = f"{array.name}-{suffix}" if array.name in {_key_name(key) for key in renamed} else array.name
    return da.Array(copied, name, chunks=array.chunks, meta=array._meta)


def _gated(graph: dict[Any, Any], after: da.Array, *, suffix: str) -> dict[Any, Any]:
    """The graph with every reference to a literal (``DataNode``) made to wait for ``after``."""
    gate = _single_key(after)
    waiting = {
        key: _renamed_key(key, f"{suffix}-after") for key, node in graph.items() if isinstance(node, DataNode)
    }
    gated = {
        key: node if isinstance(node, DataNode) else node.substitute(waiting, key=key)
        for key, node in graph.items()
    }
    gated.update({new: Task(new, _first, TaskRef(key), TaskRef(gate)) for key, new in waiting.items()})
    gated.update(dict(after.__dask_graph__()))
    return gated


def _single_key(array: da.Array) -> Any:
    keys = list(flatten(array.__dask_keys__()))
    if len(keys) != 1:
        raise InvalidParameterError(f"a copy can wait for one chunk only, got {len(keys)} chunks")
    return keys[0]


def _first(value: Any, _after: Any) -> Any:
    return value


def _renamed_key(key: Any, suffix: str) -> Any:
    if isinstance(key, tuple):
        return (f"{key[0]}-{suffix}", *key[1:])
    return f"{key}-{suffix}"


def _key_name(key: Any) -> Any:
    return key[0] if isinstance(key, tuple) else key


def has_p2p_layers(array: da.Array) -> bool:
    """True when the graph holds a distributed P2P rechunk or shuffle (never copied)."""
    return any(type(layer).__name__.startswith("P2P") for layer in array.dask.layers.values())
