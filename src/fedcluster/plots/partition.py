"""Label distribution per client (train and eval), the reference's first figures.

Stacked bars (one bar per label, one colour per client) while clients are few
enough to tell apart; a clients x labels heat map beyond that.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .style import colors, new_figure

__all__ = ["MAX_STACKED_CLIENTS", "label_distribution"]

MAX_STACKED_CLIENTS = 30


def label_distribution(counts: np.ndarray, title: str) -> Figure:
    """``counts[client, label]`` as stacked bars, or as a heat map for many clients."""
    counts = np.asarray(counts)
    n_clients, n_labels = counts.shape
    if n_clients > MAX_STACKED_CLIENTS:
        fig = new_figure(9.0, min(3.0 + 0.04 * n_clients, 14.0))
        ax = fig.add_subplot()
        im = ax.imshow(counts, aspect="auto", cmap="viridis", interpolation="nearest")
        fig.colorbar(im, ax=ax, label="samples")
        ax.set_xlabel("label")
        ax.set_ylabel("client")
        ax.set_xticks(range(n_labels))
        ax.set_title(f"{title}: {n_clients} clients, {int(counts.sum())} samples")
        return fig
    fig = new_figure(9.0, 4.8)
    ax = fig.add_subplot()
    bottom = np.zeros(n_labels)
    palette = colors(n_clients)
    for c in range(n_clients):
        ax.bar(np.arange(n_labels), counts[c], bottom=bottom, color=palette[c],
               label=f"client {c}", edgecolor="white", linewidth=0.3)
        bottom += counts[c]
    ax.set_xticks(range(n_labels))
    ax.set_xlabel("label")
    ax.set_ylabel("samples")
    ax.set_title(f"{title}: {n_clients} clients, {int(counts.sum())} samples")
    if n_clients <= 20:
        ax.legend(fontsize="x-small", ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig
