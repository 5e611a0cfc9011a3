"""Can the workers import what the tasks will need?  Asked before the first task is sent.

A worker whose Python lacks a module of a task (no vidsvd installed there, or another
version) cannot unpickle the task: it drops its connection to the scheduler and stops,
and the computation waits for workers that never come.  Asking every worker to import
the task modules first (one ``Client.run`` per cluster) turns that into one error that
names the workers and the module.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import distributed

__all__ = ["import_problems", "missing_module"]


def missing_module(modules: Sequence[str]) -> str | None:
    """Import each of ``modules`` here; the first failure as one line, or None.

    Runs on a worker (through ``Client.run``).  A worker without this package fails
    earlier, on unpickling this function, which :func:`import_problems` reports alike.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # an import may fail in any way, not only ImportError
            return f"{name}: {type(error).__name__}: {error}"
    return None


def import_problems(client: distributed.Client, modules: Sequence[str]) -> dict[str, str | None]:
    """Every worker's address, with why it cannot import all of ``modules`` (None: it can).

    Cost: one round trip to each worker, which imports the modules (they stay
    imported for the tasks).
    """
    answers = client.run(missing_module, list(modules), on_error="return")
    return {
        address: f"{type(answer).__name__}: {answer}" if isinstance(answer, BaseException) else answer
        for address, answer in answers.items()
    }
