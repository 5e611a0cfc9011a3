"""The dependency rule of DESIGN.md, checked on the source itself.

- storage/ and cluster/ import nothing of pipelines/; cluster/ imports nothing of storage/
  but its error base class (storage.errors);
- only storage/ imports zarr and imageio_ffmpeg;
- only cluster/ creates a dask.distributed Client or cluster;
- the pure modules (pipelines/*.py but the public API) import neither cluster nor the
  steps, command line or benchmarks; only the steps, the command line, the benchmarks
  and the public API import cluster; only the command line imports the benchmarks;
- only storage/ reads or writes Zarr attributes or names the ``complete`` marker;
- no module is over 500 lines; tests import no private name of the packages.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "storage", "cluster")
CLIENT_FACTORIES = {"Client", "LocalCluster", "SpecCluster", "SLURMCluster", "PBSCluster", "KubeCluster"}


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def _client_constructions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name in CLIENT_FACTORIES:
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {name}(...)")
    return found


@pytest.mark.parametrize("package", ["storage", "cluster"])
def test_lower_layers_do_not_import_pipelines(package: str) -> None:
    offenders = [str(p.relative_to(REPO)) for p in _modules(package) if "pipelines" in _imported_roots(p)]
    assert offenders == []


def _imported_modules(path: Path) -> set[str]:
    """Full names of the modules a file imports (``from a.b import c`` gives a.b and a.b.c)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _imports_under(path: Path, prefix: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for name in _imported_modules(path))


def test_cluster_imports_only_the_error_base_of_storage() -> None:
    offenders = [
        f"{p.relative_to(REPO)}: {name}"
        for p in _modules("cluster")
        for name in _imported_modules(p)
        if name.split(".")[0] == "storage" and not name.startswith("storage.errors")
    ]
    assert offenders == []


PURE_EXCEPTIONS = {"api.py"}
COMPOSITION = ("pipelines/steps/", "pipelines/cli/", "pipelines/bench/", "pipelines/api.py")


def _pure_modules() -> list[Path]:
    return [p for p in sorted((REPO / "pipelines").glob("*.py")) if p.name not in PURE_EXCEPTIONS]


def _is_composition(path: Path) -> bool:
    return str(path.relative_to(REPO)).startswith(COMPOSITION)


def test_pure_modules_reach_no_cluster_and_no_composition() -> None:
    forbidden = ("cluster", "distributed", "zarr", "pipelines.steps", "pipelines.cli", "pipelines.bench")
    offenders = [
        f"{p.relative_to(REPO)} imports {prefix}"
        for p in _pure_modules()
        for prefix in forbidden
        if _imports_under(p, prefix)
    ]
    assert offenders == []


def test_only_the_composition_imports_cluster() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for p in _modules("pipelines")
        if _imports_under(p, "cluster") and not _is_composition(p)
    ]
    assert offenders == []


def test_only_the_command_line_imports_the_benchmarks() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for package in PACKAGES
        for p in _modules(package)
        if _imports_under(p, "pipelines.bench")
        and not str(p.relative_to(REPO)).startswith(("pipelines/cli/", "pipelines/bench/"))
    ]
    assert offenders == []


def _attribute_uses(path: Path) -> list[str]:
    """``.attrs``, ``update_attributes`` and the literal ``"complete"`` in a file, in order."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in {"attrs", "update_attributes"}:
            found.append((node.lineno, node.col_offset, f"{path.name}:{node.lineno} .{node.attr}"))
        elif isinstance(node, ast.Constant) and node.value == "complete":
            found.append((node.lineno, node.col_offset, f"{path.name}:{node.lineno} 'complete'"))
    return [label for _, _, label in sorted(found)]


def test_only_storage_touches_attributes() -> None:
    offenders = [
        use for package in ("pipelines", "cluster") for p in _modules(package) for use in _attribute_uses(p)
    ]
    assert offenders == []


def test_the_attribute_checker_sees_attributes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("x = array.attrs['a']\narray.update_attributes({'complete': True})\n")
    assert [use.split()[-1] for use in _attribute_uses(bad)] == [".attrs", ".update_attributes", "'complete'"]


MAX_MODULE_LINES = 500


def test_no_module_is_over_500_lines() -> None:
    long = {
        str(p.relative_to(REPO)): n
        for package in PACKAGES
        for p in _modules(package)
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_flat_benchmark_modules() -> None:
    assert sorted(p.name for p in (REPO / "pipelines").glob("bench_*.py")) == []


def test_tests_import_no_private_names() -> None:
    offenders = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.split(".")[0] in PACKAGES
                and any(alias.name.startswith("_") for alias in node.names)
            ):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} from {node.module}")
    assert offenders == []


@pytest.mark.parametrize("library", ["zarr", "imageio_ffmpeg"])
def test_only_storage_touches_the_disk_libraries(library: str) -> None:
    offenders = [
        str(p.relative_to(REPO))
        for package in ("pipelines", "cluster")
        for p in _modules(package)
        if library in _imported_roots(p)
    ]
    assert offenders == []
    assert any(library in _imported_roots(p) for p in _modules("storage")), (
        f"storage no longer uses {library}?"
    )


def test_only_cluster_creates_a_client() -> None:
    offenders = [
        c for package in ("pipelines", "storage") for p in _modules(package) for c in _client_constructions(p)
    ]
    assert offenders == []


def test_the_rule_checker_sees_violations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import zarr\nfrom pipelines import run\nfrom distributed import Client\nc = Client()\n")
    assert {"zarr", "pipelines", "distributed"} <= _imported_roots(bad)
    tree_calls = [n for n in ast.walk(ast.parse(bad.read_text())) if isinstance(n, ast.Call)]
    assert len(tree_calls) == 1


@pytest.mark.parametrize("package", PACKAGES)
def test_generic_package_names_resolve_to_this_repository(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().parent == REPO / package


# --- no shell: every subprocess gets an argument list ----------------------------------

SHELL_CALLS = {"system", "popen", "getoutput", "getstatusoutput", "create_subprocess_shell"}


def _shell_uses(path: Path) -> list[str]:
    """Calls that hand a command line to a shell: ``shell=True`` or os.system and kin."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        shell_kwarg = any(
            kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False)
            for kw in node.keywords
        )
        if name in SHELL_CALLS or shell_kwarg:
            found.append(f"{path.name}:{node.lineno} {name}(...)")
    return found


def test_nothing_starts_a_shell() -> None:
    """User input (paths, URLs, addresses) never reaches a shell: no command line is parsed."""
    offenders = [use for package in PACKAGES for path in _modules(package) for use in _shell_uses(path)]
    assert offenders == []


def test_the_shell_checker_sees_shells(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import os, subprocess\nos.system('ls')\nsubprocess.run('ls', shell=True)\n"
        "subprocess.run(['ls'], shell=False)\nsubprocess.run(['ls'])\n"
    )
    assert [use.split()[0] for use in _shell_uses(bad)] == ["bad.py:2", "bad.py:3"]
