"""Do the workers run the tasks' code?  Asked before the first task is sent.

A worker whose Python lacks a module of a task (no vidsvd installed there, or another
version) cannot unpickle the task: it drops its connection to the scheduler and stops,
and the computation waits for workers that never come.  A worker whose Python has
another version of the modules unpickles the task and runs that version's code: a
result computed by other code than the one asked for.  Asking every worker to import
the task modules first and to compare their source with this machine's (one
``Client.run`` per cluster) turns both into one error that names the workers and the
module.  The libraries that compute or store the tasks' results
(:data:`RESULT_LIBRARIES`) must be of this machine's versions too: another numpy or
zarr on one worker computes or writes with other code as surely as another vidsvd.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import distributed

__all__ = [
    "RESULT_LIBRARIES",
    "import_problems",
    "library_pins",
    "library_versions",
    "module_problem",
    "source_digests",
]

RESULT_LIBRARIES: Final = ("numpy", "scipy", "dask", "distributed", "zarr", "numcodecs", "cv2", "zstandard")
"""Modules whose code computes, encodes or stores what vidsvd's tasks produce: a worker
must have each at this machine's version (``__version__``)."""

_DIGEST_BYTES = 16
"""Bytes of each module's SHA-256 kept (128 bits: no two versions collide by chance)."""


def source_digests(packages: Sequence[str]) -> dict[str, str]:
    """The digest of every module's source file of ``packages``, by module name, as installed here.

    Cost: one read of each ``.py`` file of the packages (about a megabyte for vidsvd).
    A package that is not installed gives no entries.
    """
    digests: dict[str, str] = {}
    for package in packages:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.submodule_search_locations is None:
            continue
        for folder in map(Path, spec.submodule_search_locations):
            for source in sorted(folder.rglob("*.py")):
                parts = source.relative_to(folder).with_suffix("").parts
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                digests[".".join((package, *parts))] = _digest(source)
    return digests


_DISTRIBUTIONS: Final = {"cv2": "opencv-python-headless"}
"""The pip distribution of a module of :data:`RESULT_LIBRARIES` whose name differs."""


def library_pins() -> str:
    """``name==version`` of every installed distribution of :data:`RESULT_LIBRARIES`, space-separated.

    What a worker image is built with so that its workers pass :func:`import_problems`
    (the Kubernetes Dockerfile's ``LIBRARY_PINS``).  A library installed here under
    another distribution (``opencv-python`` for cv2) is left out.
    """
    pins = []
    for module in RESULT_LIBRARIES:
        distribution = _DISTRIBUTIONS.get(module, module)
        try:
            pins.append(f"{distribution}=={importlib.metadata.version(distribution)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return " ".join(pins)


def library_versions(libraries: Sequence[str]) -> dict[str, str | None]:
    """Each module's ``__version__`` as installed here, None when it is not (or has none).

    Imports the modules (each is a dependency of vidsvd, imported by its tasks anyway).
    """
    versions: dict[str, str | None] = {}
    for name in libraries:
        try:
            module = importlib.import_module(name)
        except Exception:  # an import may fail in any way, not only ImportError
            versions[name] = None
            continue
        version = getattr(module, "__version__", None)
        versions[name] = str(version) if version is not None else None
    return versions


def module_problem(
    modules: Sequence[str],
    *,
    packages: Sequence[str],
    expected: Mapping[str, str],
    expected_versions: Mapping[str, str | None] | None = None,
) -> str | None:
    """Import ``modules`` here and compare the loaded modules of ``packages`` with ``expected``.

    Runs on a worker (through ``Client.run``).  Every module of ``packages`` this
    process has loaded (those imported and their own imports) must have the source
    digest ``expected`` gives it (:func:`source_digests` on the caller's machine),
    and each library of ``expected_versions`` the version it gives
    (:func:`library_versions` there).  A worker without this package fails earlier,
    on unpickling this function, which :func:`import_problems` reports alike.

    Returns
    -------
    str or None
        The first problem as one phrase (the module and what is wrong), or None.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as error:  # an import may fail in any way, not only ImportError
            return f"{name}: {type(error).__name__}: {error}"
    tops = set(packages)
    for name, module in sorted(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if name.partition(".")[0] not in tops or not file:
            continue
        if name not in expected:
            return f"{name}: a module this machine's version does not have"
        if _digest(Path(file)) != expected[name]:
            return f"{name}: its source differs from this machine's"
    wanted = expected_versions or {}
    found = library_versions(list(wanted))
    for name, version in wanted.items():
        if found[name] != version:
            return f"{name} {found[name] or 'missing'} on the worker, {version or 'missing'} on this machine"
    return None


def import_problems(
    client: distributed.Client, modules: Sequence[str], *, packages: Sequence[str]
) -> dict[str, str | None]:
    """Every worker's address, with why it cannot run ``modules`` as this machine would (None: it can).

    Each worker imports ``modules`` and compares its loaded modules of ``packages``
    with this machine's source, and its :data:`RESULT_LIBRARIES` with this machine's
    versions (:func:`module_problem`).

    Cost: the digests of this machine's packages (:func:`source_digests`), and one
    round trip to each worker, carrying them (a few kilobytes); the worker imports the
    modules (they stay imported for the tasks) and reads the source of its loaded
    modules of ``packages`` once.
    """
    expected = source_digests(packages)
    answers = client.run(
        module_problem,
        list(modules),
        packages=list(packages),
        expected=expected,
        expected_versions=library_versions(RESULT_LIBRARIES),
        on_error="return",
    )
    return {
        address: f"{type(answer).__name__}: {answer}" if isinstance(answer, BaseException) else answer
        for address, answer in answers.items()
    }


def _digest(source: Path) -> str:
    """The first :data:`_DIGEST_BYTES` of the file's SHA-256, in hex."""
    return hashlib.sha256(source.read_bytes()).hexdigest()[: 2 * _DIGEST_BYTES]
