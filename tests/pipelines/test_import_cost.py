"""What the main job imports before it needs it: matplotlib only for the report."""

from __future__ import annotations

from tests.helpers import python_words


def _loaded_after(statement: str, module: str) -> bool:
    return python_words(f"import sys; {statement}; print({module!r} in sys.modules)") == ["True"]


def test_the_job_and_the_separation_do_not_import_matplotlib() -> None:
    # the job imports the report's module (and matplotlib with it) while the cluster
    # computes; the separation writes its images with Pillow alone
    assert not _loaded_after("import pipelines.steps.job, pipelines.steps.separate", "matplotlib")
    assert not _loaded_after("import pipelines.images", "matplotlib")


def test_the_report_imports_it() -> None:
    # the check above would pass for a name that is never loaded at all
    assert _loaded_after("import pipelines.steps.report", "matplotlib")
