"""Figure building blocks on small hand-made records, with exact expectations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedcluster.plots import draw_figures, load_record
from fedcluster.plots.clusters import cluster_round, select_rounds
from fedcluster.plots.curves import client_loss, highlighted_clients
from fedcluster.plots.elbow import round_sse_per_k, sse_per_k
from fedcluster.plots.partition import MAX_STACKED_CLIENTS, label_distribution


def _round(r: int, n: int, k: int = 2, xy: bool = True, sampled=None) -> dict:
    sampled = range(n) if sampled is None else sampled
    clients = [{"id": c, "cluster": c % k, "train_loss": 1.0 / r + 0.01 * c,
                "num_examples": 10, "steps": 1, **({"xy": [float(c % k) * 5, 0.1 * c]}
                                                   if xy else {})} for c in sampled]
    clusters = [{"id": i, "members": list(range(i, n, k)), "size": len(range(i, n, k)),
                 "accuracy": 0.5 + 0.1 * i, "top5": 0.9, "loss": 1.0 / r} for i in range(k)]
    return {"round": r, "accuracy": 0.55, "top5": 0.9, "loss": 1.0 / r, "seconds": 0.1,
            "sse": 1.0, "empty_clusters": [], "clusters": clusters, "clients": clients}


def _write_run(path: Path, rounds: list[dict], n: int, classes: int = 10) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rounds))
    rng = np.random.default_rng(0)
    (path / "partition.json").write_text(json.dumps({
        "num_classes": classes, "train": rng.integers(0, 20, (n, classes)).tolist(),
        "eval": rng.integers(0, 5, (n, classes)).tolist()}))
    return path


def test_sse_per_k_closed_form() -> None:
    pts = np.array([[0, 0], [0, 1], [10, 0], [10, 1]], dtype=float)
    got = sse_per_k(pts, k_max=6)
    assert list(got) == [1, 2, 3, 4]  # no more clusters than distinct points
    assert got[1] == pytest.approx(101.0)
    assert got[2] == pytest.approx(1.0)
    assert got[3] == pytest.approx(0.5)
    assert got[4] == pytest.approx(0.0)


@pytest.mark.parametrize("recorded", [
    {"1": 9.0, "2": 4.0, "3": 1.0},
    [[1, 9.0], [2, 4.0], [3, 1.0]],
    [{"k": 1, "sse": 9.0}, {"k": 2, "sse": 4.0}, {"k": 3, "sse": 1.0}],
    [9.0, 4.0, 1.0],
])
def test_recorded_sse_per_k_wins_over_recomputing(recorded) -> None:
    r = _round(1, 6)
    r["sse_per_k"] = recorded
    assert round_sse_per_k(r) == {1: 9.0, 2: 4.0, 3: 1.0}


def test_sse_per_k_from_projections_or_none() -> None:
    r = _round(1, 6)
    curve = round_sse_per_k(r)
    assert curve is not None and curve[1] > curve[2] >= 0
    assert round_sse_per_k(_round(1, 6, xy=False)) is None
    assert cluster_round(_round(1, 6, k=1, xy=False), k=1) is None


def test_select_rounds() -> None:
    assert select_rounds(list(range(1, 13)), 5) == [5, 10, 12]
    assert select_rounds(list(range(1, 11)), 5) == [5, 10]
    assert select_rounds(list(range(1, 13)), 0) == [12]
    assert select_rounds([], 3) == []


def test_label_distribution_switches_to_heat_map_for_many_clients() -> None:
    few = label_distribution(np.ones((10, 4)), "train")
    many = label_distribution(np.ones((MAX_STACKED_CLIENTS + 1, 4)), "train")
    assert len(few.axes[0].patches) == 10 * 4 and not few.axes[0].images  # stacked bars
    assert len(many.axes[0].images) == 1 and not many.axes[0].patches  # heat map


def test_client_loss_band_for_many_clients(tmp_path: Path) -> None:
    rounds = [_round(r, 50, sampled=range(r % 2, 50, 2)) for r in range(1, 6)]
    rec = load_record(_write_run(tmp_path, rounds, 50))
    fig = client_loss(rec)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[0] == "median" and len(labels) == 4  # median + 3 highlighted clients
    assert len(ax.collections) == 2  # the 10-90 % and 25-75 % bands


def test_highlighted_clients_are_highest_median_lowest() -> None:
    row = [3.0, 1.0, 2.0, 5.0, np.nan]
    losses = np.array([row, row, row, [3.0, 1.0, 2.0, 5.0, 9.0]])
    # client 4 was seen in 1 of 4 rounds (under half as often as the others): left out;
    # means 3, 1, 2, 5 -> highest 3, median (upper) 0, lowest 1
    assert highlighted_clients(losses) == [3, 0, 1]


def test_record_reads_a_running_run_and_its_matrices(tmp_path: Path) -> None:
    rounds = [_round(1, 4, sampled=[0, 1]), _round(2, 4, sampled=[2])]
    rounds[0]["clusters"] = [{"id": 0, "members": [0], "size": 1, "accuracy": 0.1,
                              "top5": 0.5, "loss": 2.0},
                             {"id": 1, "members": [1], "size": 1, "accuracy": None,
                              "top5": None, "loss": None}]
    run = _write_run(tmp_path, rounds, 4)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"round": 3, "accura')  # the line being written
    rec = load_record(run)
    assert len(rec.rounds) == 2 and rec.summary is None and rec.num_clients == 4
    np.testing.assert_array_equal(rec.membership(), [[0, 0], [1, 1], [-1, 0], [-1, 1]])
    losses = rec.client_losses()
    assert np.isnan(losses[0, 2]) and losses[1, 2] == pytest.approx(0.52)
    assert np.isnan(rec.cluster_series("accuracy")[0, 1])
    (run / "metrics.jsonl").write_text('{"round": 1\n' + json.dumps(rounds[1]) + "\n")
    with pytest.raises(ValueError, match="line 1"):
        load_record(run)


def test_draw_figures_for_120_clients(tmp_path: Path) -> None:
    rounds = [_round(r, 120, k=3, sampled=range(r, 120, 3)) for r in range(1, 6)]
    files = draw_figures(_write_run(tmp_path, rounds, 120), every=4)
    names = sorted(f.name for f in files)
    assert names == ["clients-loss.png", "clusters-membership.png", "clusters-metrics.png",
                     "clusters-round-4.png", "clusters-round-5.png",
                     "labels-eval.png", "labels-train.png"]
    # redrawing with another spacing removes the old per-round figures
    (tmp_path / "figures" / "clusters-round-4.png").touch()
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rounds[:3]))
    draw_figures(tmp_path, every=0)
    assert sorted(p.name for p in (tmp_path / "figures").glob("clusters-round-*")) == [
        "clusters-round-3.png"]


def test_missing_run_dir_is_explained(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        load_record(tmp_path)
