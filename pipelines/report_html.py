"""One self-contained HTML page from a run's report and its figures.

:func:`render_report_html` is pure: a report (the dict that becomes ``report.json``)
and PNG figures in, one HTML string out.  The page loads nothing: the style sheet is
inline and every image is a ``data:image/png;base64`` URI, so the file can be mailed,
archived or opened offline and shows the same.  Every value from the report is
HTML-escaped; a URL in it is shown as text, never followed.

The report's keys this page knows (each optional; any other key is shown too, as a
generic table):

``title`` : str
    Page title.
``video`` : dict
    What was decomposed (source, frames, size, fps, stored bytes, segments...).
``factors`` : dict
    How (method, rank, power iterations, seed, fingerprint...).
``ranks`` : list of dict
    One row per rank, as :func:`pipelines.metrics.rank_table` makes them: ``rank``,
    ``compression_fraction``, ``factor_bytes``, ``bytes_vs_raw``,
    ``bytes_vs_stored``, ``relative_error``, ``mse``, ``psnr_db``.
``separation`` : dict
    How the masks were made (background, rank, threshold and its rule, clean-up)
    and the activity summary; shown with the ``activity`` and ``masks`` figures.
    Its warnings (``warning`` and keys ending in ``_warning``: a background that does
    not fit, a camera that moved, pixels whose background was hardly seen) are also
    shown under the title, where they are seen first.
``quality`` : dict or list
    Scores against ground truth, e.g. ``{method: Scores.as_dict()}``: a mapping of
    methods to their scores is shown as one row per method, F-measure first, with the
    fit time when a row gives one (``fit_s``); the counts stay in ``report.json``.
``timings`` : dict
    Step name to wall time in seconds.
``provenance`` : dict
    Versions, parameters, fingerprints.

The figures' names this page knows: ``spectrum``, ``energy``, ``components``,
``activity`` and ``masks`` (the separation's timeline and sample masks); any
name starting with ``background`` goes to the Backgrounds section, any other to
Figures.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pipelines.units import format_bytes
from storage.errors import InvalidParameterError

__all__ = ["render_report_html"]

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_KNOWN_SECTIONS: Final = (
    "title",
    "video",
    "factors",
    "ranks",
    "quality",
    "timings",
    "provenance",
    "background_models",
    "separation",
)
_SEPARATION_FIGURES: Final = (
    ("activity", "Foreground share of every frame (dots: the frames below; dashed: a new source video)"),
    (
        "foreground_share",
        "Where the foreground is: the share of frames each pixel is in the foreground (outlined:"
        " pixels whose background was hardly ever seen, where the masks are unreliable)",
    ),
    ("masks", "The busiest frames and their masks"),
)
_QUALITY_COLUMNS: Final = {
    "f_measure": "F-measure",
    "precision": "precision",
    "recall": "recall",
    "specificity": "specificity",
    "pwc": "PWC (% wrong)",
    "frames": "frames scored",
    "fit_s": "fit time s",
}
_PLOTS: Final = (("spectrum", "Singular value spectrum"), ("energy", "Cumulative energy"))
_RANK_COLUMNS: Final = {
    "rank": "rank k",
    "compression_fraction": "size / M (k(P+1+T)/PT)",
    "factor_bytes": "factor bytes",
    "bytes_vs_raw": "factors / raw uint8 video",
    "bytes_vs_stored": "factors / stored video",
    "bytes_vs_source": "factors / source files",
    "relative_error": "relative error ||M-M_k||/||M||",
    "mse": "MSE",
    "psnr_db": "PSNR",
}
_PERCENT_KEYS: Final = frozenset(
    {"compression_fraction", "bytes_vs_raw", "bytes_vs_stored", "bytes_vs_source"}
)
_BYTES_KEYS: Final = frozenset({"factor_bytes", "stored_bytes", "bytes"})
_STYLE: Final = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; }
img.pixels { image-rendering: pixelated; min-width: 320px; }
.warnings { border: 1px solid #d9a400; background: #fff8e1; padding: 0.2em 1em; }
"""


def render_report_html(report: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    """Render a report and its figures as one self-contained HTML page.

    Parameters
    ----------
    report : mapping
        The run's report (see the module docstring for the keys shown specially);
        JSON-like values: mappings, sequences, str, numbers, bool, None.
    images : mapping of str to bytes
        Figure name to PNG bytes (e.g. from :mod:`pipelines.plots`).

    Returns
    -------
    str
        A complete HTML5 document with no external reference: inline CSS, images as
        base64 data URIs, no scripts.

    Raises
    ------
    InvalidParameterError
        A figure's bytes are not a PNG.
    """
    for name, data in images.items():
        if not isinstance(data, bytes | bytearray) or not bytes(data).startswith(_PNG_SIGNATURE):
            raise InvalidParameterError(
                f"figure {name!r} is not PNG bytes; render it with the pipelines.plots functions"
            )
    title = str(report.get("title", "vidsvd report"))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_text(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{_text(title)}</h1>",
        *_warnings_html(report.get("separation")),
    ]
    for key, heading in (("video", "Video"), ("factors", "Factors")):
        if key in report:
            parts += [f"<h2>{heading}</h2>", _value_html(report[key])]
    if "ranks" in report:
        parts += ["<h2>Compression and reconstruction error per rank</h2>", _ranks_html(report["ranks"])]
    plots = [_figure_html(images[name], caption) for name, caption in _PLOTS if name in images]
    if plots:
        parts += ["<h2>Spectrum</h2>", *plots]
    if "components" in images:
        parts += [
            "<h2>First components</h2>",
            "<p>Columns of U reshaped to the frame; component 0 is the background image.</p>",
            _figure_html(images["components"], "U[:, i] as images"),
        ]
    backgrounds = sorted(name for name in images if name.startswith("background"))
    if backgrounds:
        parts.append("<h2>Backgrounds</h2>")
        if report.get("background_models"):
            parts += [
                "<p>The SVD's mean background beside each fitted model's (median: the exact"
                " temporal median; robust: the median of the gain-corrected frames times a gain"
                " per frame), per source video: the mean of its plates when a long video has a plate"
                " per window (--plate-window).</p>",
                _value_html(report["background_models"]),
            ]
        parts += [_figure_html(images[name], name, pixels=True) for name in backgrounds]
    if "separation" in report:
        parts += [
            "<h2>Separation</h2>",
            "<p>Masks mark the pixels whose foreground (frame minus background) exceeds the"
            " threshold, after the clean-up. The timeline is also in the CSV file named below.</p>",
            _value_html(report["separation"]),
        ]
        parts += [
            _figure_html(images[name], caption) for name, caption in _SEPARATION_FIGURES if name in images
        ]
    if "quality" in report:
        parts += [
            "<h2>Quality against ground truth</h2>",
            "<p>CDnet 2014 metrics. vidsvd: the stored masks; vidsvd-MODEL: that background model's"
            " masks of the same frames, made as <code>separate --model MODEL</code> makes them (auto"
            " threshold), with the time its background took to fit.</p>",
            _quality_html(report["quality"]),
        ]
    known_figures = {"spectrum", "energy", "components", *backgrounds}
    if "separation" in report:
        known_figures |= {name for name, _ in _SEPARATION_FIGURES}
    others = [name for name in images if name not in known_figures]
    if others:
        parts.append("<h2>Figures</h2>")
        parts += [_figure_html(images[name], name) for name in others]
    if "timings" in report:
        parts += ["<h2>Timings</h2>", _timings_html(report["timings"])]
    for key, value in report.items():
        if key not in _KNOWN_SECTIONS:
            heading = _label(key)
            parts += [f"<h2>{_text(heading[:1].upper() + heading[1:])}</h2>", _value_html(value)]
    if "provenance" in report:
        parts += ["<h2>Provenance</h2>", _value_html(report["provenance"])]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _warnings_html(separation: Any) -> list[str]:
    """The separation's warnings as one highlighted box, or nothing."""
    if not isinstance(separation, Mapping):
        return []
    lines = [
        f"<p><b>{_text(_label(key))}:</b> {_text(value)}</p>"
        for key, value in separation.items()
        if (key == "warning" or str(key).endswith("_warning")) and value
    ]
    return ['<div class="warnings">', *lines, "</div>"] if lines else []


def _quality_html(quality: Any) -> str:
    """Scores by method as one row per method, the columns of :data:`_QUALITY_COLUMNS` present."""
    by_method = isinstance(quality, Mapping) and all(isinstance(v, Mapping) for v in quality.values())
    if not (quality and by_method):
        return _value_html(quality)
    keys = [key for key in _QUALITY_COLUMNS if any(key in row for row in quality.values())]
    head = "<th>method</th>" + "".join(f"<th>{_text(_QUALITY_COLUMNS[key])}</th>" for key in keys)
    body = "".join(
        f"<tr><th>{_text(method)}</th>" + "".join(_cell(row.get(key), key=key) for key in keys) + "</tr>"
        for method, row in quality.items()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure_html(data: bytes, caption: str, *, pixels: bool = False) -> str:
    encoded = base64.b64encode(bytes(data)).decode("ascii")
    css = ' class="pixels"' if pixels else ""
    return (
        f'<figure><img{css} src="data:image/png;base64,{encoded}" alt="{_text(caption)}">'
        f"<figcaption>{_text(caption)}</figcaption></figure>"
    )


def _ranks_html(rows: Any) -> str:
    if (
        not isinstance(rows, Sequence)
        or isinstance(rows, str)
        or not all(isinstance(r, Mapping) for r in rows)
    ):
        return _value_html(rows)
    keys = [k for k in _RANK_COLUMNS if any(k in row for row in rows)]
    keys += [k for row in rows for k in row if k not in keys]
    keys = list(dict.fromkeys(keys))
    head = "".join(f"<th>{_text(_RANK_COLUMNS.get(k, _label(k)))}</th>" for k in keys)
    body = []
    for row in rows:
        cells = "".join(_cell(row.get(k), key=k) for k in keys)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _timings_html(timings: Any) -> str:
    if not isinstance(timings, Mapping):
        return _value_html(timings)
    rows = []
    for step, seconds in timings.items():
        shown = _format_seconds(seconds) if _is_number(seconds) else None
        cell = f'<td class="num">{_text(shown)}</td>' if shown is not None else _cell(seconds)
        rows.append(f"<tr><th>{_text(_label(step))}</th>{cell}</tr>")
    return f"<table><tbody>{''.join(rows)}</tbody></table>"


def _value_html(value: Any, *, key: str = "") -> str:
    """Any JSON-like value as HTML: mappings and lists of mappings become tables."""
    if isinstance(value, Mapping):
        if value and all(isinstance(v, Mapping) for v in value.values()):
            return _records_html([{"": name, **v} for name, v in value.items()])
        rows = "".join(
            f"<tr><th>{_text(_label(k))}</th>{_cell(v, key=str(k))}</tr>" for k, v in value.items()
        )
        return f"<table><tbody>{rows}</tbody></table>"
    if _is_records(value):
        return _records_html(list(value))
    return f"<p>{_text(_format(value, key=key))}</p>"


def _records_html(records: list[Mapping[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for record in records for k in record))
    head = "".join(f"<th>{_text(_label(k))}</th>" for k in keys)
    body = "".join("<tr>" + "".join(_cell(r.get(k), key=k) for k in keys) + "</tr>" for r in records)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Any, *, key: str = "") -> str:
    if isinstance(value, Mapping) or _is_records(value):
        return f"<td>{_value_html(value, key=key)}</td>"
    css = ' class="num"' if _is_number(value) else ""
    return f"<td{css}>{_text(_format(value, key=key))}</td>"


def _format(value: Any, *, key: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and key in _BYTES_KEYS:
        return format_bytes(value)
    if _is_number(value):
        number = float(value)
        if math.isnan(number):
            return "n/a"
        if math.isinf(number):
            return "∞" if number > 0 else "-∞"
        if key in _PERCENT_KEYS:
            return f"{100 * number:.3g} %"
        if key == "psnr_db":
            return f"{number:.2f} dB"
        if key.endswith("_s") or key.endswith("seconds"):
            return _format_seconds(number)
        if isinstance(value, int):
            return f"{value:,}".replace(",", " ")
        return f"{number:.4g}"
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return ", ".join(_format(v) for v in value)
    return str(value)


def _format_seconds(seconds: Any) -> str:
    value = float(seconds)
    if value >= 60:
        minutes, rest = divmod(value, 60)
        return f"{int(minutes)} min {rest:.1f} s"
    return f"{value:.3g} s"


def _label(key: Any) -> str:
    return str(key).replace("_", " ")


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, str)


def _is_records(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str | bytes)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value)
    )
