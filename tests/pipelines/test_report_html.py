"""The self-contained HTML report and the PNG figures it embeds."""

from __future__ import annotations

import base64
import io
import re

import dask.array as da
import numpy as np
import pytest
from PIL import Image

from pipelines.images import background_png, components_png, image_png
from pipelines.metrics import rank_table
from pipelines.plots import activity_png, energy_png, spectrum_png
from pipelines.report_html import render_report_html
from pipelines.scores import Scores
from storage.errors import InvalidParameterError

PNG = b"\x89PNG\r\n\x1a\n"


def _decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --- plots ---------------------------------------------------------------------------------


def test_plots_are_png_bytes() -> None:
    s = np.geomspace(1e5, 1.0, 40)
    for data in (spectrum_png(s), energy_png(s), energy_png(s, total=float(np.sum(s**2)) * 2)):
        assert data.startswith(PNG)
        assert _decode(data).size == (640, 360)
    spectrum_png(np.array([5.0, 0.0]))  # a zero value is left off the log axis
    rng = np.random.default_rng(0)
    grid = components_png([rng.normal(size=(12, 16)) for _ in range(5)], columns=3)
    assert grid.startswith(PNG)
    width, height = _decode(grid).size
    assert width > height  # 3 columns, 2 rows of 4:3 images
    assert components_png([np.zeros((4, 4)), rng.uniform(size=(4, 4, 3))], titles=["flat", "rgb"]).startswith(
        PNG
    )


def test_line_plots_keep_their_labels_inside_the_picture() -> None:
    """Fixed margins: with the widest tick labels these plots meet, no text runs off an edge."""
    s = np.geomspace(1e9, 1e-3, 400)  # tick labels 10^-3 .. 10^9, 400 components
    busy = np.linspace(0, 1, 90_000)  # 100 % of the frame, an hour at 25 fps (x ticks of 4 digits)
    for data in (spectrum_png(s), energy_png(s), activity_png(busy, fps=25.0, marked_frames=[0, 89_999])):
        pixels = np.asarray(_decode(data).convert("L"))
        assert pixels.shape == (360, 640)
        edges = np.concatenate(
            [pixels[:2].ravel(), pixels[-2:].ravel(), pixels[:, :2].ravel(), pixels[:, -2:].ravel()]
        )
        assert edges.min() == 255, "a label reaches the edge of the picture"


def test_plates_side_by_side_keep_their_grey_levels() -> None:
    """Stretched, a dark plate and a bright one look alike; plates are shown as they are."""
    dark, bright = np.full((30, 40), 40.0), np.full((30, 40), 200.0)
    plain = np.asarray(
        _decode(components_png([dark, bright], titles=["dark", "bright"], stretch=False)).convert("L")
    )
    stretched = np.asarray(_decode(components_png([dark, bright], titles=["dark", "bright"])).convert("L"))
    panel_row = plain.shape[0] - 20  # below the titles, inside the panels
    assert {40, 200} <= set(np.unique(plain[panel_row]))
    assert not {40, 200} & set(np.unique(stretched[panel_row]))  # flat images stretch to black


def test_images_are_encoded_pixel_for_pixel() -> None:
    pixels = np.arange(48, dtype=np.uint8).reshape(6, 8)
    decoded = np.asarray(_decode(image_png(pixels)))
    np.testing.assert_array_equal(decoded, pixels)
    rgb = np.zeros((2, 3, 3), dtype=np.uint8)
    rgb[..., 1] = 200
    np.testing.assert_array_equal(np.asarray(_decode(image_png(rgb))), rgb)
    background = np.array([[-20.0, 0.4], [127.6, 300.0]])
    np.testing.assert_array_equal(np.asarray(_decode(background_png(background))), [[0, 0], [128, 255]])


def test_plot_inputs_are_checked() -> None:
    with pytest.raises(InvalidParameterError, match="uint8"):
        image_png(np.zeros((2, 2)))
    with pytest.raises(InvalidParameterError, match="shape"):
        image_png(np.zeros((2, 2, 2), dtype=np.uint8))
    with pytest.raises(InvalidParameterError, match="compute"):
        background_png(da.zeros((2, 2)))
    with pytest.raises(InvalidParameterError, match="vector"):
        spectrum_png(np.zeros((2, 2)))
    with pytest.raises(InvalidParameterError, match="at least one"):
        components_png([])
    with pytest.raises(InvalidParameterError, match="titles"):
        components_png([np.zeros((2, 2))], titles=["a", "b"])


# --- HTML ------------------------------------------------------------------------------------


def sample_report() -> dict[str, object]:
    ranks = [1, 5]
    return {
        "title": "Report of <clip> & co",
        "video": {
            "source": "clip.avi",
            "n_frames": 6000,
            "height": 120,
            "width": 160,
            "stored_bytes": 52_428_800,
        },
        "factors": {"method": "randomized", "rank": 5, "power_iterations": 4, "seed": 0},
        "ranks": rank_table(
            ranks,
            n_pixels=19200,
            n_frames=6000,
            relative_errors=[0.123456, 0.05],
            mean_squared_errors=[40.0, 6.5],
            stored_video_bytes=52_428_800,
        ),
        "quality": {
            "svd rank 1": Scores(tp=10, fp=2, fn=3, tn=100).as_dict(),
            "mog2": Scores(fn=4).as_dict(),
        },
        "timings": {"ingest": 12.5, "svd": 75.25},
        "provenance": {"versions": {"dask": "2026.8", "numpy": "2.4"}, "fingerprint": "ab" * 32},
        "notes": ["first", "second"],
    }


def test_report_is_one_self_contained_page() -> None:
    s = np.geomspace(1e5, 1.0, 10)
    images = {
        "spectrum": spectrum_png(s),
        "energy": energy_png(s),
        "components": components_png([np.eye(8)] * 3),
        "background_0": background_png(np.full((8, 8), 100.0)),
        "background_1": background_png(np.full((8, 8), 150.0)),
        "masks": image_png(np.zeros((8, 8), dtype=np.uint8)),
    }
    page = render_report_html(sample_report(), images)
    assert page.startswith("<!DOCTYPE html>")
    assert page.rstrip().endswith("</html>")
    # every image embedded, none fetched
    sources = re.findall(r'<img[^>]*src="([^"]*)"', page)
    assert len(sources) == len(images)
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    embedded = {base64.b64decode(src.split(",", 1)[1]) for src in sources}
    assert embedded == set(images.values())
    assert "http://" not in page
    assert "https://" not in page
    assert "<script" not in page
    assert "<link" not in page
    # the rank table: fraction, stored-bytes ratios, error, PSNR
    assert "0.109 %" in page  # compression fraction of rank 5 on 19200 x 6000
    assert "0.438 %" in page  # its float32 bytes against the raw uint8 video
    assert "0.961 %" in page  # ... and against the stored video
    assert "0.1235" in page
    assert "dB" in page
    assert "50 MiB" in page
    # timings, quality, provenance and unknown keys are all shown, escaped
    assert "1 min 15.2 s" in page or "1 min 15.3 s" in page
    assert "mog2" in page
    assert "n/a" in page or "—" in page
    assert "ab" * 32 in page
    assert "first, second" in page
    assert "<clip>" not in page
    assert "Report of &lt;clip&gt; &amp; co" in page


def test_report_shows_urls_as_text_only() -> None:
    page = render_report_html({"provenance": {"store": "https://example.org/store"}}, {})
    assert "https://example.org/store" in page  # shown ...
    assert 'href="https' not in page  # ... never followed
    assert 'src="https' not in page


def test_report_refuses_images_that_are_not_png() -> None:
    with pytest.raises(InvalidParameterError, match="spectrum"):
        render_report_html({}, {"spectrum": b"GIF89a..."})


def test_empty_report_is_still_a_page() -> None:
    page = render_report_html({}, {})
    assert "<h1>vidsvd report</h1>" in page


def test_quality_is_one_row_per_method_f_measure_first() -> None:
    quality = {
        "vidsvd": Scores(tp=90, fp=10, fn=10, tn=890).as_dict(),
        "vidsvd-robust": {**Scores(tp=90, fp=10, fn=10, tn=890).as_dict(), "fit_s": 1.5},
        "knn": Scores(tp=50, fp=50, fn=50, tn=850).as_dict(),
    }
    page = render_report_html({"quality": quality}, {})
    table = page[page.index("Quality against ground truth") :]
    table = table[table.index("<table>") : table.index("</table>")]
    headers = re.findall(r"<th>([^<]*)</th>", table[: table.index("</thead>")])
    assert headers == [
        "method",
        "F-measure",
        "precision",
        "recall",
        "specificity",
        "PWC (% wrong)",
        "fit time s",
    ]  # no frame count in these rows: a column only for what some row gives
    rows = re.findall(r"<tr><th>([^<]*)</th>(.*?)</tr>", table[table.index("<tbody>") :])
    assert [method for method, _ in rows] == ["vidsvd", "vidsvd-robust", "knn"]
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for _, row in rows]
    assert cells[0][0] == "0.9" and cells[2][0] == "0.5"  # F-measure first
    assert cells[1][-1] == "1.5 s" and cells[0][-1] == "—"  # the fit time only where there is one
    assert ">890<" not in table  # the counts stay in report.json


def test_warnings_of_the_separation_come_first_in_one_box() -> None:
    camera = "the camera moves: 14 of 24 sampled frames <sit> up to 21 pixels away"
    page = render_report_html(
        {
            "title": "t",
            "video": {"frames": 3},
            "separation": {"threshold": 30.0, "camera_warning": camera, "warning": "", "rank": 1},
        },
        {},
    )
    box = re.search(r'<div class="warnings">(.*?)</div>', page, flags=re.S)
    assert box is not None and page.index(box.group(0)) < page.index("<h2>Video</h2>")
    assert box.group(1).count("<p>") == 1  # the empty warning is not shown
    assert "camera warning:</b> the camera moves: 14 of 24 sampled frames &lt;sit&gt;" in box.group(1)
    assert "camera warning" in page[page.index("<h2>Separation</h2>") :]  # and still in its table
    quiet = render_report_html({"separation": {"threshold": 30.0}}, {})
    assert 'class="warnings"' not in quiet
