"""compare.html renders in a headless Chromium: a screenshot shows the table and the
embedded curves (each group's colour), not a blank or broken page. Skipped when no
Chromium or Chrome is installed (Debian: apt-get install chromium-headless-shell)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread
from test_sweep_compare import _fake_run

from fedcluster.cli import main
from fedcluster.plots.style import colors

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome",
            "google-chrome-stable", "chrome")
BROWSER = next((b for b in BROWSERS if shutil.which(b)), None)
WIDTH, HEIGHT = 1000, 1000


def _near(image: np.ndarray, rgb: np.ndarray, tol: float = 0.06) -> int:
    """How many pixels of ``image`` are within ``tol`` of colour ``rgb`` in every channel."""
    return int((np.abs(image[..., :3] - rgb[:3]) < tol).all(axis=-1).sum())


@pytest.mark.skipif(BROWSER is None, reason="no Chromium/Chrome installed")
def test_compare_html_renders_table_and_curves(tmp_path, capsys):
    k2 = 'name = "a"\n[cluster]\nk = 2\n'
    k3 = 'name = "b"\n[cluster]\nk = 3\n'
    _fake_run(tmp_path / "runs", "a0", "seed = 0\n" + k2, [0.3, 0.6, 0.8, 0.9])
    _fake_run(tmp_path / "runs", "a1", "seed = 1\n" + k2, [0.4, 0.7, 0.85, 0.92])
    _fake_run(tmp_path / "runs", "b0", "seed = 0\n" + k3, [0.5, 0.55, 0.6, 0.62])
    page = tmp_path / "compare.html"
    assert main(["compare", str(tmp_path / "runs"), "--html", str(page)]) == 0, \
        capsys.readouterr().err
    shot = tmp_path / "shot.png"
    subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={shot}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    image = imread(str(shot))
    assert image.shape[:2] == (HEIGHT, WIDTH)
    background = image[-1, -1, :3]
    drawn = (np.abs(image[..., :3] - background) > 0.1).any(axis=-1).mean()
    assert drawn > 0.02, f"the page looks blank: {drawn:.1%} of pixels differ from white"
    # the embedded PNG was decoded and drawn: both groups' curve colours are on screen
    for rgb in colors(2):
        assert _near(image, rgb) > 100, f"no curve in colour {rgb[:3]}"
