"""The clustering itself: per round, the 2-D projection of the client updates coloured
by cluster (shaped by true group where known) beside the SSE-vs-k elbow curve; over the
run, which client was in which cluster."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .elbow import round_sse_per_k
from .record import RunRecord
from .style import colors, integer_axis, new_figure

__all__ = ["MARKERS", "cluster_round", "membership", "select_rounds"]


def select_rounds(rounds: list[int], every: int) -> list[int]:
    """Every ``every``-th round plus the last (``every = 0``: only the last)."""
    if not rounds:
        return []
    picked = [r for r in rounds if every > 0 and r % every == 0]
    return sorted(set(picked) | {rounds[-1]})


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")


def _points(round_: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The round's recorded projections ``[n, 2]`` (a 1-D projection, as PCA gives for
    two clients, gets a zero second coordinate), their clusters and client ids."""
    rows = [c for c in round_["clients"] if c.get("xy") is not None and c["id"] >= 0]
    xy = np.zeros((len(rows), 2))
    for i, c in enumerate(rows):
        v = np.ravel(np.asarray(c["xy"], dtype=float))[:2]
        xy[i, :len(v)] = v
    return (xy, np.array([c["cluster"] for c in rows], dtype=np.int64),
            np.array([c["id"] for c in rows], dtype=np.int64))


def cluster_round(round_: dict[str, Any], k: int, name: str = "", seed: int = 0,
                  groups: np.ndarray | None = None) -> Figure | None:
    """Scatter of the round's update projections, coloured by cluster and, when the true
    ``groups`` are known, shaped by true group; beside it the elbow curve. None when the
    round has neither (k = 1, or clustering without a 2-D projection)."""
    xy, lab, ids = _points(round_)
    curve = round_sse_per_k(round_, k_max=max(10, k), seed=seed)
    if not len(xy) and not curve:
        return None
    fig = new_figure(11.0, 4.5)
    left, right = fig.subplots(1, 2)
    k = max(k, int(lab.max()) + 1 if len(lab) else 0, 1)
    palette = colors(k)
    if len(xy):
        known = groups is not None and len(groups) > int(ids.max())
        true = groups[ids] if known else np.zeros(len(ids), dtype=np.int64)
        for i in range(k):
            for g in np.unique(true):
                sel = (lab == i) & (true == g)
                if sel.any():
                    left.scatter(xy[sel, 0], xy[sel, 1], s=32, color=palette[i],
                                 marker=MARKERS[int(g) % len(MARKERS)], edgecolor="k",
                                 linewidth=0.3)
        handles = [Line2D([], [], marker="o", linestyle="", color=palette[i],
                          markeredgecolor="k", markeredgewidth=0.3,
                          label=f"cluster {i} ({int((lab == i).sum())})")
                   for i in range(k) if (lab == i).any()]
        if known:
            handles += [Line2D([], [], marker=MARKERS[int(g) % len(MARKERS)], linestyle="",
                               color="white", markeredgecolor="k",
                               label=f"true group {int(g)} ({int((true == g).sum())})")
                        for g in np.unique(true)]
        left.legend(handles=handles, fontsize="small")
    else:
        left.text(0.5, 0.5, "no 2-D projection recorded", ha="center", va="center",
                  transform=left.transAxes)
    left.set_title("client updates (PCA, 2-D): colour = cluster"
                   + (", shape = true group" if groups is not None else ""))
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
