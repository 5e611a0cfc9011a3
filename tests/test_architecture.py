"""The dependency rule of DESIGN.md, checked on the source itself.

- storage/ and cluster/ import nothing of pipelines/; cluster/ imports nothing of storage/;
- only storage/ imports zarr and imageio_ffmpeg;
- only cluster/ creates a dask.distributed Client or cluster.
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


def test_cluster_does_not_import_storage() -> None:
    offenders = [str(p.relative_to(REPO)) for p in _modules("cluster") if "storage" in _imported_roots(p)]
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
