"""report.html renders in a real headless browser (skipped when no Chromium is installed)."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.plots import spectrum_png
from pipelines.report_html import render_report_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium on this machine")
def test_report_renders_with_its_embedded_figure(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(
        render_report_html(
            {"title": "browser check", "ranks": []},
            {"spectrum": spectrum_png(np.geomspace(1e5, 1e2, 20))},
        )
    )
    shot = tmp_path / "shot.png"
    assert CHROMIUM is not None
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1000,1400",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=90,
    )
    pixels = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("L"), dtype=np.float64)
    assert pixels.shape == (1400, 1000)
    # the plot's dark axes and line make the page far from a blank white sheet
    assert (pixels < 100).mean() > 0.002
