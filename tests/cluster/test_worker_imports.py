"""The workers' code check: module digests and the per-worker comparison, in this process."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import cluster
import cluster.worker_imports
from cluster.worker_imports import (
    RESULT_LIBRARIES,
    library_pins,
    library_versions,
    module_problem,
    source_digests,
)


def test_source_digests_name_every_module_of_a_package_by_its_import_name() -> None:
    digests = source_digests(["cluster", "no_such_package_here"])
    folder = Path(cluster.__file__).parent
    assert len(digests) == len(list(folder.rglob("*.py")))
    assert not any(name.startswith("no_such_package_here") for name in digests)
    source = Path(cluster.worker_imports.__file__).read_bytes()
    assert digests["cluster.worker_imports"] == hashlib.sha256(source).hexdigest()[:32]
    assert digests["cluster"] == hashlib.sha256(Path(cluster.__file__).read_bytes()).hexdigest()[:32]


def test_a_process_with_this_machines_modules_has_no_problem() -> None:
    expected = source_digests(["cluster"])
    assert module_problem(["cluster.errors"], packages=["cluster"], expected=expected) is None


def test_a_loaded_module_whose_source_differs_is_named() -> None:
    expected = source_digests(["cluster"])
    expected["cluster.worker_imports"] = "0" * 32  # as if this machine had another version
    problem = module_problem(["cluster.errors"], packages=["cluster"], expected=expected)
    assert problem == "cluster.worker_imports: its source differs from this machine's"


def test_a_loaded_module_this_machine_lacks_is_named() -> None:
    expected = source_digests(["cluster"])
    del expected["cluster.errors"]
    problem = module_problem(["cluster.errors"], packages=["cluster"], expected=expected)
    assert problem == "cluster.errors: a module this machine's version does not have"


def test_a_module_that_cannot_be_imported_is_named_with_its_error() -> None:
    problem = module_problem(["cluster.errors", "cluster.no_such_module"], packages=["cluster"], expected={})
    assert problem is not None
    assert problem.startswith("cluster.no_such_module: ModuleNotFoundError: No module named")
    assert "cluster.no_such_module" not in sys.modules


def test_modules_of_other_packages_are_not_compared() -> None:
    # numpy is loaded here, but only the packages asked for are compared
    assert "numpy" in sys.modules
    expected = source_digests(["cluster"])
    assert module_problem(["numpy"], packages=["cluster"], expected=expected) is None


def test_the_result_libraries_are_compared_by_version() -> None:
    import numpy
    import zarr

    versions = library_versions(RESULT_LIBRARIES)
    assert set(versions) == set(RESULT_LIBRARIES)
    assert versions["numpy"] == numpy.__version__ and versions["zarr"] == zarr.__version__
    expected = source_digests(["cluster"])

    def problem_with(wanted: dict[str, str | None]) -> str | None:
        return module_problem(
            ["cluster.errors"], packages=["cluster"], expected=expected, expected_versions=wanted
        )

    assert problem_with(versions) is None
    # as if this machine had another zarr, or a library the worker lacks
    assert problem_with({**versions, "zarr": "3.0.0"}) == (
        f"zarr {zarr.__version__} on the worker, 3.0.0 on this machine"
    )
    assert (
        problem_with({"no_such_library": "1.0"})
        == "no_such_library missing on the worker, 1.0 on this machine"
    )


def test_the_pins_name_this_machines_versions_as_pip_spells_them() -> None:
    import importlib.metadata

    pins = dict(pin.split("==") for pin in library_pins().split())
    assert {"numpy", "dask", "distributed", "zarr", "numcodecs"} <= set(pins)
    assert all(version == importlib.metadata.version(name) for name, version in pins.items())
