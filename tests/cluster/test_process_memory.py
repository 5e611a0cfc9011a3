"""The command's process reuses the memory it frees (glibc), and only the command sets it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import pipelines.cli as cli
from tests.helpers import REPO

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
    done = subprocess.run(
        [sys.executable, "-c", _FAULTS_OF_FIVE_ARRAYS, mode],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    applied, faults = done.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not _GLIBC, reason="glibc's mallopt: other C libraries keep their own behaviour")
def test_freed_arrays_are_reused_not_faulted_in_again() -> None:
    applied, kept = _faults("keep")
    _, plain = _faults("plain")
    assert applied
    # 5 x 64 MiB written afresh is 80,000 faults of 4 KiB pages or 160 of 2 MiB pages;
    # reused, the memory is already there
    assert kept <= 20 < plain


def test_the_command_sets_it_before_it_runs_and_a_caller_of_main_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append("malloc") or True)
    monkeypatch.setattr(cli, "main", lambda argv=None: calls.append("main") or 0)
    monkeypatch.setattr(cli.gc, "freeze", lambda: None)
    with pytest.raises(SystemExit) as exited:
        cli.console_main()
    assert exited.value.code == 0
    assert calls == ["malloc", "main"]
