"""The command's process reuses the memory it frees (glibc), faults NumPy's arrays in
small pages, and only the command sets either."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

import pipelines.cli as cli
from cluster.process_memory import NUMPY_HUGE_PAGES_VARIABLE
from tests.helpers import REPO, python_words

_GLIBC = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None

_FAULTS_OF_FIVE_ARRAYS = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from cluster.process_memory import keep_freed_memory

    applied = keep_freed_memory() if sys.argv[1] == "keep" else False
    faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    held = np.ones(64 << 20, dtype=np.uint8)  # a chunk-sized array, written, then freed
    del held
    before = faults()
    for _ in range(5):  # five more of them, as five tasks would make
        held = np.ones(64 << 20, dtype=np.uint8)
        del held
    print(applied, faults() - before)
    """
)


def _faults(mode: str) -> tuple[bool, int]:
    applied, faults = python_words(_FAULTS_OF_FIVE_ARRAYS, mode)
    return applied == "True", int(faults)


@pytest.mark.skipif(not _GLIBC, reason="glibc's mallopt: other C libraries keep their own behaviour")
def test_freed_arrays_are_reused_not_faulted_in_again() -> None:
    applied, kept = _faults("keep")
    _, plain = _faults("plain")
    assert applied
    # 5 x 64 MiB written afresh is 80,000 faults of 4 KiB pages or 160 of 2 MiB pages;
    # reused, the memory is already there
    assert kept <= 20 < plain


_HUGE_PAGES_ADVISED = textwrap.dedent(
    """
    import os, sys
    from cluster.process_memory import NUMPY_HUGE_PAGES_VARIABLE, fault_arrays_in_small_pages

    if sys.argv[1] == "numpy first":
        import numpy
    applied = fault_arrays_in_small_pages()
    import numpy
    from numpy._core.multiarray import _get_madvise_hugepage  # NumPy's own switch

    print(applied, _get_madvise_hugepage(), os.environ.get(NUMPY_HUGE_PAGES_VARIABLE, "unset"))
    """
)


def _huge_pages(order: str, variable: str | None) -> tuple[str, str, str]:
    environment = {k: v for k, v in os.environ.items() if k != NUMPY_HUGE_PAGES_VARIABLE}
    if variable is not None:
        environment[NUMPY_HUGE_PAGES_VARIABLE] = variable
    applied, advised, left = python_words(_HUGE_PAGES_ADVISED, order, env=environment)
    return applied, advised, left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="NumPy advises huge pages on Linux")
def test_numpy_is_told_not_to_advise_huge_pages_in_this_process_only() -> None:
    # set for NumPy's import and removed: worker processes this one starts keep the default
    assert _huge_pages("first", None) == ("True", "False", "unset")
    # the user's own choice stands, in this process and in its children
    assert _huge_pages("first", "0") == ("True", "False", "0")
    assert _huge_pages("first", "1") == ("False", "True", "1")
    # too late once NumPy is imported: said, not pretended
    applied, _, left = _huge_pages("numpy first", None)
    assert (applied, left) == ("False", "unset")


def _console_main_calls(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> tuple[object, list[str]]:
    """Run the executable's entry with ``argv``; its exit code and the settings it made, in order."""
    calls: list[str] = []
    monkeypatch.setattr(cli, "fault_arrays_in_small_pages", lambda: calls.append("pages") or True)
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append("malloc") or True)
    monkeypatch.setattr(cli, "main", lambda argv=None: calls.append("main") or 0)
    monkeypatch.setattr(cli.gc, "freeze", lambda: None)
    monkeypatch.setattr(cli.sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        cli.console_main()
    return exited.value.code, calls


def test_the_command_sets_it_before_it_runs_and_a_caller_of_main_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, calls = _console_main_calls(monkeypatch, ["vidsvd", "run", "clip.mp4"])
    assert code == 0
    assert calls == ["malloc", "pages", "main"]


def test_bench_keeps_the_users_settings_for_its_contenders(monkeypatch: pytest.MonkeyPatch) -> None:
    _, calls = _console_main_calls(monkeypatch, ["vidsvd", "bench", "run", "clip.mp4"])
    assert calls == ["main"]


def test_the_command_line_imports_numpy_only_after_it_has_set_the_pages() -> None:
    # NumPy reads its huge-page switch once, at import: the command's module must not
    # import it before console_main has run
    assert python_words("import sys, pipelines.cli; print('numpy' in sys.modules)") == ["False"]


def test_a_numpy_that_cannot_be_imported_is_left_for_the_command_to_report(tmp_path: Path) -> None:
    broken = tmp_path / "numpy"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('numpy is broken here')\n")
    script = (
        "import os\n"
        "from cluster.process_memory import NUMPY_HUGE_PAGES_VARIABLE, fault_arrays_in_small_pages\n"
        "print(fault_arrays_in_small_pages(), os.environ.get(NUMPY_HUGE_PAGES_VARIABLE, 'unset'))\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != NUMPY_HUGE_PAGES_VARIABLE}
    environment["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO)])
    assert python_words(script, env=environment) == ["False", "unset"]
