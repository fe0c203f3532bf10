"""The clustering against the true groups, where they are known (``data.groups > 1``):
ARI and NMI per round, and the true group x cluster table of the last round."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .record import RunRecord
from .style import integer_axis, new_figure

__all__ = ["confusion", "truth_scores"]


def confusion(groups: np.ndarray, assignment: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """``table[g, j]``: how many clients of true group ``g`` sit in cluster ``columns[j]``.

    ``columns`` are the clusters that hold a client, in order, with -1 (not assigned)
    last when some client is unassigned.
    """
    groups = np.asarray(groups, dtype=np.int64)
    assignment = np.asarray(assignment, dtype=np.int64)
    if groups.shape != assignment.shape:
        raise ValueError(f"{len(groups)} true groups for {len(assignment)} assignments")
    present = np.unique(assignment)
    columns = [int(c) for c in present if c >= 0] + ([-1] if (present < 0).any() else [])
    table = np.zeros((int(groups.max()) + 1 if groups.size else 0, len(columns)),
                     dtype=np.int64)
    for j, c in enumerate(columns):
        np.add.at(table[:, j], groups[assignment == c], 1)
    return table, columns


def truth_scores(record: RunRecord) -> Figure | None:
    """ARI and NMI of each round's clustering against the true groups; None when no round
    recorded them (the true groups are not known)."""
    ari, nmi = record.series("ari"), record.series("nmi")
    if np.isnan(ari).all() and np.isnan(nmi).all():
        return None
    x = np.array([r["round"] for r in record.rounds])
    fig = new_figure(8.0, 4.2)
    ax = fig.add_subplot()
    ax.plot(x, ari, "o-", markersize=3, color="tab:blue", label="ARI")
    ax.plot(x, nmi, "s--", markersize=3, color="tab:orange", label="NMI")
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_ylim(min(-0.05, float(np.nanmin(ari)) - 0.05) if not np.isnan(ari).all() else -0.05,
                1.05)
    ax.set_xlabel("round")
    integer_axis(ax.xaxis)
    ax.set_ylabel("agreement with the true groups")
    last = [f"{name} {v[~np.isnan(v)][-1]:.3f}" for name, v in (("ARI", ari), ("NMI", nmi))
            if not np.isnan(v).all()]
    ax.set_title(f"{record.name}: clustering vs true groups (last: {', '.join(last)})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig
