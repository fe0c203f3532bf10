"""Curves over rounds: each cluster model's accuracy, top-5 accuracy and loss, and
every client's training loss (a quantile band with a few highlighted clients when
there are too many to draw one by one)."""

from __future__ import annotations

import warnings

import numpy as np
from matplotlib.figure import Figure

from .record import RunRecord
from .style import colors, integer_axis, new_figure

__all__ = ["MAX_CLIENT_LINES", "client_loss", "cluster_metrics", "highlighted_clients"]

MAX_CLIENT_LINES = 10


def cluster_metrics(record: RunRecord) -> Figure:
    """Accuracy, top-5 accuracy and loss of each cluster model per round, with the
    overall value (every client evaluated with its cluster's model) dashed."""
    x = np.array([r["round"] for r in record.rounds])
    fig = new_figure(13.0, 4.2)
    axes = fig.subplots(1, 3)
    palette = colors(record.k)
    for ax, key, label in zip(axes, ("accuracy", "top5", "loss"),
                              ("accuracy", "top-5 accuracy", "loss"), strict=True):
        per = record.cluster_series(key)
        for i in range(record.k):
            ax.plot(x, per[:, i], marker="o", markersize=3, color=palette[i],
                    label=f"cluster {i}")
        ax.plot(x, record.series(key), "k--", linewidth=1.5, label="overall")
        ax.set_xlabel("round")
        integer_axis(ax.xaxis)
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{record.name}: cluster models per round")
    return fig


def highlighted_clients(losses: np.ndarray, n: int = 3) -> list[int]:
    """The clients with the highest, median and lowest mean training loss, among those
    sampled most often (so their lines are long enough to read)."""
    seen = np.sum(~np.isnan(losses), axis=0)
    if seen.max(initial=0) == 0:
        return []
    candidates = np.flatnonzero(seen >= max(1, int(0.5 * seen.max())))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(losses[:, candidates], axis=0)
    order = candidates[np.argsort(mean, kind="stable")]
    picks = [order[-1], order[len(order) // 2], order[0]]
    return list(dict.fromkeys(int(p) for p in picks))[:n]


def client_loss(record: RunRecord) -> Figure:
    """Training loss of each client per round (gaps where a client was not sampled); in
    centralised mode the one training loss, on the pooled data."""
    x = np.array([r["round"] for r in record.rounds])
    losses = record.client_losses()
    pooled = record.pooled_loss()
    fig = new_figure(9.0, 4.8)
    ax = fig.add_subplot()
    n = losses.shape[1]
    if pooled is not None and np.isnan(losses).all():
        ok = ~np.isnan(pooled)
        ax.plot(x[ok], pooled[ok], marker="o", markersize=3, color="tab:blue",
                label="pooled data (centralised)")
        ax.legend(fontsize="small")
    elif n <= MAX_CLIENT_LINES:
        palette = colors(n)
        for c in range(n):
            ok = ~np.isnan(losses[:, c])
            ax.plot(x[ok], losses[ok, c], marker="o", markersize=3, color=palette[c],
                    label=f"client {c}")
        ax.legend(fontsize="x-small", ncol=2)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # rounds where nobody trained
            q = np.nanquantile(losses, [0.1, 0.25, 0.5, 0.75, 0.9], axis=1)
        ax.fill_between(x, q[0], q[4], color="tab:blue", alpha=0.15, label="10-90%")
        ax.fill_between(x, q[1], q[3], color="tab:blue", alpha=0.3, label="25-75%")
        ax.plot(x, q[2], color="tab:blue", linewidth=2, label="median")
        for c, color in zip(highlighted_clients(losses), ("tab:red", "tab:green", "tab:purple"),
                            strict=False):
            ok = ~np.isnan(losses[:, c])
            ax.plot(x[ok], losses[ok, c], marker=".", color=color, linewidth=1,
                    label=f"client {c}")
        ax.legend(fontsize="small")
    ax.set_xlabel("round")
    integer_axis(ax.xaxis)
    ax.set_ylabel("mean training loss")
    ax.set_title(f"{record.name}: training loss on the pooled data" if pooled is not None
                 else f"{record.name}: training loss per client ({n} clients)")
    ax.grid(alpha=0.3)
    return fig
