"""The clustering itself: per round, the 2-D projection of the client updates coloured
by cluster beside the SSE-vs-k elbow curve; over the run, which client was in which
cluster."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from .elbow import round_sse_per_k
from .record import RunRecord
from .style import colors, integer_axis, new_figure

__all__ = ["cluster_round", "membership", "select_rounds"]


def select_rounds(rounds: list[int], every: int) -> list[int]:
    """Every ``every``-th round plus the last (``every = 0``: only the last)."""
    if not rounds:
        return []
    picked = [r for r in rounds if every > 0 and r % every == 0]
    return sorted(set(picked) | {rounds[-1]})


def cluster_round(round_: dict[str, Any], k: int, name: str = "", seed: int = 0) -> Figure | None:
    """Scatter of the round's update projections by cluster, and its elbow curve; None
    when the round has neither (k = 1, or clustering without a 2-D projection)."""
    pts = [(c["xy"], c["cluster"]) for c in round_["clients"] if c.get("xy") is not None]
    curve = round_sse_per_k(round_, k_max=max(10, k), seed=seed)
    if not pts and not curve:
        return None
    fig = new_figure(11.0, 4.5)
    left, right = fig.subplots(1, 2)
    palette = colors(max(k, 1))
    if pts:
        xy = np.array([p[0] for p in pts])
        lab = np.array([p[1] for p in pts])
        for i in range(k):
            sel = lab == i
            if sel.any():
                left.scatter(xy[sel, 0], xy[sel, 1], s=28, color=palette[i],
                             label=f"cluster {i} ({int(sel.sum())})", edgecolor="k",
                             linewidth=0.3)
        left.legend(fontsize="small")
    else:
        left.text(0.5, 0.5, "no 2-D projection recorded", ha="center", va="center",
                  transform=left.transAxes)
    left.set_title("client updates (PCA, 2-D)")
    left.set_xlabel("component 1")
    left.set_ylabel("component 2")
    if curve:
        ks, sse = list(curve), list(curve.values())
        right.plot(ks, sse, "o-", color="tab:blue")
        if k in curve:
            right.plot([k], [curve[k]], "o", color="tab:red", markersize=10, fillstyle="none",
                       label=f"k = {k} used")
            right.legend(fontsize="small")
        right.set_xticks(ks)
    right.set_title("SSE vs k (elbow)")
    right.set_xlabel("k")
    right.set_ylabel("SSE")
    right.grid(alpha=0.3)
    fig.suptitle(f"{name} round {round_['round']}")
    return fig


def membership(record: RunRecord) -> Figure:
    """A clients x rounds map of each client's cluster (grey: not yet assigned)."""
    grid = record.membership()
    n, r = grid.shape
    k = max(record.k, 1)
    cmap = ListedColormap(np.vstack([[0.88, 0.88, 0.88, 1.0], colors(k)]))
    fig = new_figure(min(6.0 + 0.2 * r, 14.0), min(3.0 + 0.12 * n, 14.0))
    ax = fig.add_subplot()
    rounds = [rr["round"] for rr in record.rounds]
    im = ax.imshow(grid + 1, aspect="auto", cmap=cmap, vmin=-0.5, vmax=k + 0.5,
                   interpolation="nearest",
                   extent=(rounds[0] - 0.5, rounds[-1] + 0.5, n - 0.5, -0.5))
    bar = fig.colorbar(im, ax=ax, ticks=range(k + 1))
    bar.ax.set_yticklabels(["none", *(f"cluster {i}" for i in range(k))])
    ax.set_xlabel("round")
    ax.set_ylabel("client")
    integer_axis(ax.xaxis)
    integer_axis(ax.yaxis)
    changes = int(np.sum((grid[:, 1:] != grid[:, :-1]) & (grid[:, :-1] >= 0))) if r > 1 else 0
    ax.set_title(f"{record.name}: cluster membership\n({changes} changes of cluster)")
    return fig
