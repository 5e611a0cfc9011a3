"""Plain-text tables for the terminal: the report's rank table and the evaluation's scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["format_rank_table", "format_scores"]

_SCORE_KEYS = ("recall", "specificity", "fpr", "fnr", "pwc", "precision", "f_measure")


def format_rank_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The report's per-rank rows (see :func:`pipelines.metrics.rank_table`) as plain text."""
    lines = [
        f"{'rank':>5} {'fraction':>9} {'vs stored':>10} {'vs source':>10} {'rel. error':>11} {'PSNR dB':>8}"
    ]
    for row in rows:
        stored = row.get("bytes_vs_stored")
        source = row.get("bytes_vs_source")
        psnr = row.get("psnr_db")
        lines.append(
            f"{row['rank']:5d} {row['compression_fraction']:9.2%} "
            f"{'-' if stored is None else f'{stored:.2f}x':>10} "
            f"{'-' if source is None else f'{source:.2f}x':>10} "
            f"{row['relative_error']:11.5f} {'exact' if psnr is None else f'{psnr:.2f}':>8}"
        )
    return "\n".join(lines)


def format_scores(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Scores by method (see :func:`pipelines.steps.evaluate.evaluate`), one row per method.

    When a row gives ``fit_s`` (a background model's), a last column shows it, ``-``
    for the rows without one.
    """
    width = max([len("method"), *(len(method) for method in results)])
    timed = any("fit_s" in row for row in results.values())
    header = f"{'method':{width}} " + " ".join(f"{key:>11}" for key in _SCORE_KEYS)
    lines = [header + (f" {'fit_s':>8}" if timed else "")]
    for method, row in results.items():
        cells = " ".join(
            f"{'nan' if row.get(key) is None else format(row[key], '11.4f'):>11}" for key in _SCORE_KEYS
        )
        if timed:
            seconds = row.get("fit_s")
            cells += f" {'-' if seconds is None else format(seconds, '8.1f'):>8}"
        lines.append(f"{method:{width}} {cells}")
    return "\n".join(lines)
