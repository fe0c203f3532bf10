"""Shared figure plumbing: an Agg-backed Figure (no pyplot, no global state, no show())
and colours that stay distinct for many clusters or clients."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["colors", "integer_axis", "new_figure", "save"]


def new_figure(width: float = 8.0, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def colors(n: int) -> np.ndarray:
    """``n`` RGBA colours: tab10 / tab20 while they last, then evenly spaced turbo."""
    if n <= 10:
        return colormaps["tab10"](np.arange(n))
    if n <= 20:
        return colormaps["tab20"](np.arange(n))
    return colormaps["turbo"](np.linspace(0.05, 0.95, n))


def integer_axis(axis: object) -> None:
    """Ticks at whole numbers only (rounds, clients)."""
    axis.set_major_locator(MaxNLocator(integer=True))  # type: ignore[attr-defined]


def save(fig: Figure, path: Path, dpi: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path
