"""Figures of a run, drawn from its run directory (metrics.jsonl, partition.json), and the
self-contained HTML report.

Each figure is drawn on its own: one that fails is logged as a warning and noted in
``figures/failed.json`` (name -> error), which the report shows in its place; the
others are still drawn.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .clusters import cluster_round, membership, select_rounds
from .curves import client_loss, cluster_metrics
from .fairness import client_accuracy, cluster_changes
from .partition import label_distribution
from .record import RunRecord, load_record
from .report import FAILED, write_report
from .style import save
from .truth import truth_scores

__all__ = ["FAILED", "RunRecord", "draw_figures", "load_record", "write_report"]

log = logging.getLogger(__name__)


def _figures(record: RunRecord, every: int) -> list[tuple[str, Callable[[], Figure | None]]]:
    """(file name, drawing function) of every figure the record calls for."""
    out: list[tuple[str, Callable[[], Figure | None]]] = []
    part = record.partition
    if part is not None:
        out.append(("labels-train.png", lambda: label_distribution(
            np.array(part["train"]), "train labels per client")))
        out.append(("labels-eval.png", lambda: label_distribution(
            np.array(part["eval"]), "eval labels per client")))
    if not record.rounds:
        return out
    out += [("clusters-metrics.png", lambda: cluster_metrics(record)),
            ("clients-loss.png", lambda: client_loss(record)),
            ("clients-accuracy.png", lambda: client_accuracy(record)),
            ("clusters-membership.png", lambda: membership(record)),
            ("clusters-changed.png", lambda: cluster_changes(record)),
            ("clusters-truth.png", lambda: truth_scores(record))]
    by_round = {r["round"]: r for r in record.rounds}
    width = len(str(max(by_round)))
    groups = record.groups
    for r in select_rounds(list(by_round), every):
        out.append((f"clusters-round-{r:0{width}d}.png",
                    lambda r=r: cluster_round(by_round[r], record.k, record.name,
                                              groups=groups)))
    return out


def draw_figures(run_dir: str | Path, every: int = 5) -> list[Path]:
    """(Re)draw every figure of the run in ``run_dir/figures``; returns the files written.

    Per-round cluster figures are drawn for every ``every``-th round and the last. A
    figure whose drawing raises is skipped with a warning and noted in
    ``figures/failed.json``; the rest are drawn.
    """
    record = load_record(run_dir)
    out = Path(run_dir) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("clusters-round-*.png"):
        old.unlink()
    (out / FAILED).unlink(missing_ok=True)
    written: list[Path] = []
    failed: dict[str, str] = {}
    for name, draw in _figures(record, every):
        try:
            fig = draw()
            if fig is not None:
                written.append(save(fig, out / name))
        except Exception as e:  # noqa: BLE001 - one figure never takes the others down
            failed[name] = f"{type(e).__name__}: {e}"
            log.warning("figure %s could not be drawn (%s); the report notes it", name,
                        failed[name])
            (out / name).unlink(missing_ok=True)  # no stale figure from an earlier draw
    if failed:
        (out / FAILED).write_text(json.dumps(failed, indent=1), encoding="utf-8")
    if not record.rounds:
        log.info("%s: no finished round yet; only the partition figures were drawn", run_dir)
    return written
