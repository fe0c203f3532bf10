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


def _grouped_run(path: Path, n: int = 12, k: int = 3, groups: int = 4) -> tuple[Path, list]:
    """A run record whose clients have true groups and a last-round assignment that
    mixes them, plus ARI/NMI, changed and client accuracies."""
    rng = np.random.default_rng(7)
    truth = np.repeat(np.arange(groups), n // groups)
    rounds = []
    for r in range(1, 4):
        assign = rng.integers(0, k, n)
        assign[0] = -1 if r == 3 else assign[0]  # one client not assigned in the last round
        rec = _round(r, n, k=k)
        rec["clusters"] = [{"id": i, "members": np.flatnonzero(assign == i).tolist(),
                            "size": int((assign == i).sum()), "accuracy": 0.5, "top5": 0.9,
                            "loss": 1.0} for i in range(k)]
        for c in rec["clients"]:
            c["cluster"] = int(assign[c["id"]])
            c["accuracy"] = 0.4 + 0.05 * c["id"] / n + 0.1 * r
        rec.update(ari=0.2 * r, nmi=0.25 * r, changed=r - 1, client_accuracy_mean=0.5,
                   client_accuracy_p10=0.42, client_accuracy_min=0.4)
        rounds.append(rec)
    run = _write_run(path, rounds, n)
    part = json.loads((run / "partition.json").read_text())
    part["groups"] = truth.tolist()
    (run / "partition.json").write_text(json.dumps(part))
    return run, [truth, assign]


def _html_table(html: str, title: str) -> list[list[str]]:
    import re

    block = html.split(title, 1)[1].split("</table>", 1)[0]
    return [re.findall(r"<t[dh]>(.*?)</t[dh]>", row) for row in block.split("<tr>")[1:]]


def test_report_confusion_table_counts_truth_against_assignment(tmp_path: Path) -> None:
    from collections import Counter

    from fedcluster.plots import write_report

    run, (truth, assign) = _grouped_run(tmp_path)
    files = draw_figures(run, every=0)
    assert "clusters-truth.png" in [f.name for f in files]
    html = write_report(run, files).read_text()
    rows = _html_table(html, "True group &times; cluster (round 3)")
    clusters = sorted(set(assign.tolist()) - {-1})
    assert rows[0] == ["true group", *(f"cluster {c}" for c in clusters), "not assigned",
                       "clients"]
    counts = Counter(zip(truth.tolist(), assign.tolist(), strict=True))
    for g, row in enumerate(rows[1:]):
        want = [counts[(g, c)] for c in [*clusters, -1]]
        assert row == [f"group {g}", *map(str, want), str(int((truth == g).sum()))]
    assert "ARI 0.600, NMI 0.750" in html
    rounds = _html_table(html, "<h2>Rounds</h2>")
    assert rounds[0][:10] == ["round", "accuracy", "top-5", "loss", "client acc. mean", "p10",
                              "min", "ARI", "NMI", "changed cluster"]
    assert rounds[3][7:10] == ["0.6000", "0.7500", "2"]


def test_no_truth_figure_or_table_without_known_groups(tmp_path: Path) -> None:
    from fedcluster.plots import write_report

    run = _write_run(tmp_path, [_round(r, 6) for r in (1, 2)], 6)
    files = [f.name for f in draw_figures(run, every=0)]
    assert "clusters-truth.png" not in files and "clusters-changed.png" not in files
    html = write_report(run, None).read_text()
    assert "<h2>True group" not in html and "<th>ARI</th>" not in html


def test_scatter_colours_clusters_and_shapes_true_groups(tmp_path: Path) -> None:
    from matplotlib.collections import PathCollection

    from fedcluster.plots.style import colors

    run, (truth, _) = _grouped_run(tmp_path)
    rec = load_record(run)
    round_ = rec.rounds[1]
    fig = cluster_round(round_, rec.k, groups=rec.groups)
    ax = fig.axes[0]
    by_xy = {tuple(c["xy"]): (c["cluster"], int(truth[c["id"]])) for c in round_["clients"]}
    palette = colors(rec.k)
    shape_of: dict[int, bytes] = {}
    seen = 0
    for coll in (c for c in ax.collections if isinstance(c, PathCollection)):
        pairs = {by_xy[tuple(p)] for p in coll.get_offsets().tolist()}
        assert len(pairs) == 1  # one cluster and one true group per marker set
        cluster, group = pairs.pop()
        np.testing.assert_allclose(coll.get_facecolor()[0], palette[cluster])
        shape = coll.get_paths()[0].vertices.round(6).tobytes()
        assert shape_of.setdefault(group, shape) == shape  # a group keeps its shape
        seen += len(coll.get_offsets())
    assert seen == len(round_["clients"])
    assert len(set(shape_of.values())) == len(shape_of) == len(set(truth.tolist()))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("true group 3") for t in labels)


def test_a_failing_figure_is_a_note_and_the_others_remain(tmp_path: Path, monkeypatch,
                                                          caplog) -> None:
    import fedcluster.plots as plots

    def broken(record):  # noqa: ANN001, ANN202
        raise IndexError("drawing went wrong")

    run = _write_run(tmp_path, [_round(r, 6) for r in (1, 2)], 6)
    (run / "figures").mkdir()
    (run / "figures" / "clusters-membership.png").write_bytes(b"stale")
    monkeypatch.setattr(plots, "membership", broken)
    with caplog.at_level("WARNING"):
        files = draw_figures(run, every=0)
    names = sorted(f.name for f in files)
    assert "clusters-membership.png" not in names
    assert not (run / "figures" / "clusters-membership.png").exists()  # not the stale one
    assert {"clusters-metrics.png", "clients-loss.png", "clusters-round-2.png"} <= set(names)
    assert "clusters-membership.png" in caplog.text and "drawing went wrong" in caplog.text
    html = plots.write_report(run, files).read_text()
    assert ("Figure clusters-membership.png could not be drawn: IndexError: drawing went wrong"
            in html)
    assert html.count("data:image/png;base64,") == len(files)
    monkeypatch.undo()
    draw_figures(run, every=0)  # drawn again: the note goes
    assert "could not be drawn" not in plots.write_report(run, None).read_text()


def test_a_failing_report_part_is_a_note(tmp_path: Path, monkeypatch) -> None:
    from fedcluster.plots import report

    run = _write_run(tmp_path, [_round(r, 6) for r in (1, 2)], 6)
    monkeypatch.setattr(report, "_rounds_table", lambda record: 1 / 0)
    html = report.write_report(run, []).read_text()
    assert "The rounds table could not be written: ZeroDivisionError" in html
    assert "<h2>Final results (round 2)</h2>" in html


def test_two_clients_give_one_dimensional_projections(tmp_path: Path) -> None:
    r = _round(3, 6, k=2, sampled=[1, 4])
    for c, x in zip(r["clients"], (-1.8, 1.8), strict=True):
        c["xy"] = [x]  # PCA of two points has one component
    fig = cluster_round(r, k=2)
    offsets = np.vstack([c.get_offsets() for c in fig.axes[0].collections])
    np.testing.assert_allclose(sorted(offsets.tolist()), [[-1.8, 0.0], [1.8, 0.0]])


def test_pooled_loss_is_not_a_client(tmp_path: Path) -> None:
    rounds = [_round(r, 10, sampled=[]) for r in (1, 2)]
    for r, loss in zip(rounds, (0.7, 0.1), strict=True):
        r["clients"] = [{"id": -1, "cluster": 0, "train_loss": loss, "num_examples": 100,
                         "steps": 4, "accuracy": None}]
    rec = load_record(_write_run(tmp_path, rounds, 10))
    assert np.isnan(rec.client_losses()).all()  # client 9 trained nothing
    np.testing.assert_allclose(rec.pooled_loss(), [0.7, 0.1])
    ax = client_loss(rec).axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["pooled data (centralised)"]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), [0.7, 0.1])


def test_client_accuracy_and_changes_figures(tmp_path: Path) -> None:
    from fedcluster.plots.fairness import client_accuracy, cluster_changes

    run, _ = _grouped_run(tmp_path)
    rec = load_record(run)
    ax = client_accuracy(rec).axes[0]
    dots = ax.collections[0].get_offsets()
    assert len(dots) == 3 * 12  # every client of every round
    np.testing.assert_allclose(sorted(dots[:, 1]), sorted(
        0.4 + 0.05 * c / 12 + 0.1 * r for r in (1, 2, 3) for c in range(12)))
    lines = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
    np.testing.assert_allclose(lines["10th percentile"], [0.42] * 3)
    bars = cluster_changes(rec).axes[0].patches
    assert [b.get_height() for b in bars] == [0, 1, 2]
