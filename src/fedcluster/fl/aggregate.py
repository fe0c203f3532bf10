"""Aggregation math: pure functions over stacked vectors and weights.

With the server learning rate ``lr`` (the reference's ``lambda``) a cluster model
moves towards the weighted mean of its members' local models:
``global <- global + lr * (mean(local) - global)``. ``lr = 1`` is plain FedAvg.

Where the round's updates live in several processes, the per-group sums are added up
over them: an :class:`Aggregator` is handed to the server step, :class:`LocalAggregator`
in one process, the distributed engine's over ranks (dist/engine.py).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

__all__ = ["Aggregator", "LocalAggregator", "group_means", "group_sums", "means_from_sums",
           "server_step", "weighted_mean"]


def weighted_mean(vectors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i v_i / sum_i w_i`` over the rows of ``vectors``; weights must not all be 0."""
    w = weights.to(vectors.dtype)
    total = w.sum()
    if total <= 0:
        raise ValueError("weighted_mean needs a positive total weight")
    return (w / total) @ vectors


def group_sums(vectors: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor, k: int,
               chunk: int = 1 << 16, rows: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Running sums per group: ``(sums [k, D], totals [k])`` with ``sums[g] = sum w_i v_i``
    over the rows labelled ``g`` and ``totals[g] = sum w_i``, both float64; with ``rows``
    (indices) over those rows of ``vectors`` only (``weights`` and ``labels`` are per
    row of ``vectors``).

    Accumulating in float64 makes the sums nearly independent of the order of addition:
    sums from several processes, added up, round to the same float32 model as one
    process's sum. ``chunk`` columns are converted at a time, so the float64 working
    copy is ``[m, chunk]``, never ``[m, D]``; each sum adds its rows in order.
    """
    if rows is not None:
        weights, labels = weights[rows], labels[rows]
    w = weights.to(torch.float64)
    sums = torch.zeros(k, vectors.shape[1], dtype=torch.float64, device=vectors.device)
    for s in range(0, vectors.shape[1], chunk):
        block = vectors[:, s:s + chunk] if rows is None else vectors[rows, s:s + chunk]
        sums[:, s:s + chunk].index_add_(0, labels, block.to(torch.float64) * w[:, None])
    totals = torch.zeros(k, dtype=torch.float64, device=vectors.device).index_add_(0, labels, w)
    return sums, totals


def means_from_sums(sums: torch.Tensor, totals: torch.Tensor,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``sums / totals`` per group as ``dtype``; a group with zero total weight has a zero mean."""
    means = sums / totals.clamp_min(torch.finfo(totals.dtype).tiny)[:, None]
    return means.to(dtype)


def group_means(vectors: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor,
                k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean of the rows in each of ``k`` groups, as running sums.

    Returns ``(means [k, D], totals [k])``; a group with zero total weight has a zero mean.
    """
    sums, totals = group_sums(vectors, weights, labels, k)
    return means_from_sums(sums, totals, vectors.dtype), totals.to(vectors.dtype)


def server_step(model: torch.Tensor, target: torch.Tensor, lr: float) -> torch.Tensor:
    """``model + lr * (target - model)``, a new tensor."""
    return model + lr * (target - model)


class Aggregator(Protocol):
    """Aggregation across the processes of a run (one process: :class:`LocalAggregator`)."""

    def sums(self, vectors: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor, k: int,
             rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`group_sums` of the ``rows`` this process holds (None: all), added up
        over every process."""
        ...

    def agree(self, labels: np.ndarray) -> np.ndarray:
        """One process's cluster labels, the same on every process."""
        ...

    def any(self, flag: bool) -> bool:
        """True on every process when it is True on any (every process stops together)."""
        ...

    def failed(self, error: BaseException) -> None:
        """This process is failing with ``error`` (so the others can name it)."""
        ...

    def stopped(self) -> None:
        """A stop signal came: raise if it came because another process died (torchrun
        stops the survivors), naming that process."""
        ...


class LocalAggregator:
    """One process holds every update."""

    def sums(self, vectors: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor, k: int,
             rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return group_sums(vectors, weights, labels, k, rows=rows)

    def agree(self, labels: np.ndarray) -> np.ndarray:
        return labels

    def any(self, flag: bool) -> bool:
        return flag

    def failed(self, error: BaseException) -> None:
        pass

    def stopped(self) -> None:
        pass
