"""A real small run draws its figures and report; ``fedcluster report`` redraws them,
also for a run that is still going. Every figure must be a valid, non-blank PNG."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from fedcluster.cli import main

RUN = ["data.num_clients=10", "rounds=4", "cluster.k=2", "run.threads=1", "run.device=cpu",
       "plots.every=2"]
EXPECTED = ["clients-accuracy.png", "clients-loss.png", "clusters-changed.png",
            "clusters-membership.png", "clusters-metrics.png", "clusters-round-2.png",
            "clusters-round-4.png", "labels-eval.png", "labels-train.png"]


def assert_valid_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    img = imread(path)  # decodes the whole file
    assert img.ndim == 3 and min(img.shape[:2]) >= 200, (path, img.shape)
    rgb = img[::3, ::3, :3].reshape(-1, 3)
    assert rgb.std(axis=0).max() > 0.05, f"{path} is (nearly) one colour"
    assert len(np.unique(np.round(rgb * 255), axis=0)) >= 16, f"{path} has too few colours"
    assert (rgb.min(axis=1) < 0.9).mean() > 0.01, f"{path} is (nearly) all white"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(Path("src").resolve()), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-m", "fedcluster", "run", *RUN, "--out", str(out),
                           "--quiet"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


def test_run_writes_figures_and_self_contained_report(run_dir: Path) -> None:
    figures = sorted(p.name for p in (run_dir / "figures").iterdir())
    assert figures == EXPECTED
    for name in figures:
        assert_valid_png(run_dir / "figures" / name)
    html = (run_dir / "report.html").read_text()
    embedded = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(embedded) == len(EXPECTED)
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(
        (run_dir / "figures" / n).read_bytes() for n in EXPECTED)
    assert "src='http" not in html and "<script" not in html  # nothing to fetch
    assert "Finished after 4 round(s)" in html
    assert "[cluster]" in html and "k = 2" in html  # the config
    assert "<h2>Final results (round 4)</h2>" in html


def test_report_command_redraws_a_running_run(run_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    live = tmp_path / "live"
    shutil.copytree(run_dir, live)
    shutil.rmtree(live / "figures")
    (live / "report.html").unlink()
    (live / "summary.json").unlink()  # still running: no summary yet
    lines = (live / "metrics.jsonl").read_text().splitlines()
    (live / "metrics.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])
    assert main(["report", str(live), "--every", "1"]) == 0
    assert "report:" in capsys.readouterr().out
    names = sorted(p.name for p in (live / "figures").iterdir())
    assert names == ["clients-accuracy.png", "clients-loss.png", "clusters-changed.png",
                     "clusters-membership.png", "clusters-metrics.png",
                     "clusters-round-1.png", "clusters-round-2.png", "clusters-round-3.png",
                     "labels-eval.png", "labels-train.png"]
    for name in names:
        assert_valid_png(live / "figures" / name)
    assert "Running (or stopped without a summary): 3 round(s)" in (
        live / "report.html").read_text()


def test_report_on_a_non_run_directory_is_a_clear_error(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_failed_run_still_gets_figures_and_a_report(tmp_path: Path) -> None:
    from fedcluster.callbacks import Callback, Figures, RunFiles
    from fedcluster.config import load_config
    from fedcluster.loop import run_federation

    class Interrupt(Callback):
        def on_round_end(self, result):  # noqa: ANN001
            if result.round == 2:
                raise KeyboardInterrupt

    cfg = load_config(None, ["data.num_clients=6", "rounds=5", "model.name=mlp",
                             "model.hidden=[16]", "run.threads=1", "plots.every=0"], environ={})
    with pytest.raises(KeyboardInterrupt):
        run_federation(cfg, [RunFiles(tmp_path), Figures(tmp_path, cfg.plots), Interrupt()],
                       tmp_path)
    assert (tmp_path / "figures" / "clusters-round-2.png").is_file()  # the last recorded round
    assert "Failed after 2 round(s): KeyboardInterrupt" in (tmp_path / "report.html").read_text()


def test_two_clients_per_round_with_k_2_still_get_a_report(tmp_path: Path) -> None:
    """PCA of two clients' updates has one component: the scatter draws it on a line, and
    the report is written (it used to raise IndexError and leave no report.html)."""
    out = tmp_path / "run"
    assert main(["run", "data.num_clients=6", "rounds=2", "cluster.k=2",
                 "server.clients_per_round=2", "model.name=mlp", "model.hidden=[16]",
                 "run.threads=1", "run.device=cpu", "plots.every=1", "--out", str(out),
                 "-q"]) == 0
    assert all(len(c.get("xy", [0, 0])) <= 2 for c in json.loads(
        (out / "metrics.jsonl").read_text().splitlines()[-1])["clients"])
    html = (out / "report.html").read_text()
    assert "could not be" not in html
    for name in ("clusters-round-1.png", "clusters-round-2.png"):
        assert_valid_png(out / "figures" / name)
    assert main(["report", str(out)]) == 0


def test_grouped_run_report_shows_truth(tmp_path: Path) -> None:
    """Known groups: the ARI/NMI curve, the true-group scatter and the confusion table,
    whose counts are the assignment x truth counts of the last round."""
    from collections import Counter

    out = tmp_path / "run"
    assert main(["run", "data.num_clients=8", "data.groups=2", "data.shift=rotate",
                 "data.partition=iid", "data.min_size=1", "rounds=2", "cluster.k=2",
                 "model.name=mlp", "model.hidden=[16]", "run.threads=1", "run.device=cpu",
                 "plots.every=1", "--out", str(out), "-q"]) == 0
    assert_valid_png(out / "figures" / "clusters-truth.png")
    html = (out / "report.html").read_text()
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    truth = json.loads((out / "partition.json").read_text())["groups"]
    cluster_of = {m: c["id"] for c in last["clusters"] for m in c["members"]}
    counts = Counter((truth[m], cluster_of.get(m, -1)) for m in range(len(truth)))
    block = html.split("<h2>True group &times; cluster (round 2)</h2>", 1)[1]
    block = block.split("</table>", 1)[0]
    rows = [re.findall(r"<t[dh]>(.*?)</t[dh]>", r) for r in block.split("<tr>")[1:]]
    columns = [int(h.split()[1]) if h.startswith("cluster") else -1 for h in rows[0][1:-1]]
    for g, row in enumerate(rows[1:]):
        assert row[1:-1] == [str(counts[(g, c)]) for c in columns]
    assert f"ARI {last['ari']:.3f}" in html
