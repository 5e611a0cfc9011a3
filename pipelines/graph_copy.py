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

from storage.errors import InvalidParameterError

try:
    from dask._task_spec import DataNode, convert_legacy_graph
except ImportError:  # pragma: no cover - only with a dask older than the supported range
    DataNode = convert_legacy_graph = None

__all__ = ["copy_graph", "fresh_copies", "has_p2p_layers"]


def fresh_copies(matrix: da.Array) -> Callable[[], da.Array]:
    """Return a function giving a new, independent copy of M's graph on each call."""
    counter = itertools.count()
    return lambda: copy_graph(matrix, next(counter))


def copy_graph(array: da.Array, tag: int) -> da.Array:
    """The same computation as ``array`` under new keys, sharing no task with it.

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
    name = f"{array.name}-{suffix}" if array.name in {_key_name(key) for key in renamed} else array.name
    return da.Array(copied, name, chunks=array.chunks, meta=array._meta)


def _renamed_key(key: Any, suffix: str) -> Any:
    if isinstance(key, tuple):
        return (f"{key[0]}-{suffix}", *key[1:])
    return f"{key}-{suffix}"


def _key_name(key: Any) -> Any:
    return key[0] if isinstance(key, tuple) else key


def has_p2p_layers(array: da.Array) -> bool:
    """True when the graph holds a distributed P2P rechunk or shuffle (never copied)."""
    return any(type(layer).__name__.startswith("P2P") for layer in array.dask.layers.values())
