"""Figures of a run, drawn from its run directory (metrics.jsonl, partition.json), and the
self-contained HTML report."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .clusters import cluster_round, membership, select_rounds
from .curves import client_loss, cluster_metrics
from .partition import label_distribution
from .record import RunRecord, load_record
from .report import write_report
from .style import save

__all__ = ["RunRecord", "draw_figures", "load_record", "write_report"]

log = logging.getLogger(__name__)


def draw_figures(run_dir: str | Path, every: int = 5) -> list[Path]:
    """(Re)draw every figure of the run in ``run_dir/figures``; returns the files written.

    Per-round cluster figures are drawn for every ``every``-th round and the last.
    """
    record = load_record(run_dir)
    out = Path(run_dir) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("clusters-round-*.png"):
        old.unlink()
    written: list[Path] = []

    def emit(fig: object, name: str) -> None:
        if fig is not None:
            written.append(save(fig, out / name))  # type: ignore[arg-type]

    if record.partition is not None:
        emit(label_distribution(np.array(record.partition["train"]), "train labels per client"),
             "labels-train.png")
        emit(label_distribution(np.array(record.partition["eval"]), "eval labels per client"),
             "labels-eval.png")
    if not record.rounds:
        log.info("%s: no finished round yet; only the partition figures were drawn", run_dir)
        return written
    emit(cluster_metrics(record), "clusters-metrics.png")
    emit(client_loss(record), "clients-loss.png")
    emit(membership(record), "clusters-membership.png")
    by_round = {r["round"]: r for r in record.rounds}
    width = len(str(max(by_round)))
    for r in select_rounds(list(by_round), every):
        emit(cluster_round(by_round[r], record.k, record.name), f"clusters-round-{r:0{width}d}.png")
    return written
