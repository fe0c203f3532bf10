"""Per round, always: how accuracy is spread over the clients (each client with its
cluster's model on its own eval set) and how many clients changed cluster."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .record import RunRecord
from .style import integer_axis, new_figure

__all__ = ["client_accuracy", "cluster_changes"]


def client_accuracy(record: RunRecord) -> Figure | None:
    """Each sampled client's accuracy per round (dots), with the recorded mean, 10th
    percentile and minimum over the clients; None when no round recorded any."""
    per = record.client_accuracies()
    stats = {q: record.series(f"client_accuracy_{q}") for q in ("mean", "p10", "min")}
    if np.isnan(per).all() and all(np.isnan(v).all() for v in stats.values()):
        return None
    x = np.array([r["round"] for r in record.rounds], dtype=float)
    fig = new_figure(9.0, 4.6)
    ax = fig.add_subplot()
    rows, cols = np.nonzero(~np.isnan(per))
    if rows.size:
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, rows.size)
        ax.scatter(x[rows] + jitter, per[rows, cols], s=8, color="grey", alpha=0.4,
                   linewidth=0, label="a client")
    for q, style, color in (("mean", "o-", "tab:blue"), ("p10", "s--", "tab:orange"),
                            ("min", "v:", "tab:red")):
        if not np.isnan(stats[q]).all():
            ax.plot(x, stats[q], style, markersize=3, color=color,
                    label={"p10": "10th percentile"}.get(q, q))
    ax.set_xlabel("round")
    integer_axis(ax.xaxis)
    ax.set_ylabel("client accuracy (own eval set)")
    ax.set_title(f"{record.name}: accuracy over the clients per round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def cluster_changes(record: RunRecord) -> Figure | None:
    """The clients that moved to another cluster in each round (the record's ``changed``);
    None when no round recorded it (no clustering)."""
    changed = record.series("changed")
    if np.isnan(changed).all():
        return None
    x = np.array([r["round"] for r in record.rounds])
    fig = new_figure(8.0, 3.8)
    ax = fig.add_subplot()
    ok = ~np.isnan(changed)
    ax.bar(x[ok], changed[ok], color="tab:purple", width=0.7)
    ax.set_xlabel("round")
    integer_axis(ax.xaxis)
    integer_axis(ax.yaxis)
    ax.set_ylabel("clients")
    ax.set_title(f"{record.name}: clients that changed cluster ({int(np.nansum(changed))} "
                 "in all)")
    ax.grid(alpha=0.3, axis="y")
    return fig
