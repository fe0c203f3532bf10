"""Aggregation math: pure functions over stacked vectors and weights.

With the server learning rate ``lr`` (the reference's ``lambda``) a cluster model
moves towards the weighted mean of its members' local models:
``global <- global + lr * (mean(local) - global)``. ``lr = 1`` is plain FedAvg.
"""

from __future__ import annotations

import torch

__all__ = ["group_means", "server_step", "weighted_mean"]


def weighted_mean(vectors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i v_i / sum_i w_i`` over the rows of ``vectors``; weights must not all be 0."""
    w = weights.to(vectors.dtype)
    total = w.sum()
    if total <= 0:
        raise ValueError("weighted_mean needs a positive total weight")
    return (w / total) @ vectors


def group_means(vectors: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor,
                k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean of the rows in each of ``k`` groups, as running sums.

    Returns ``(means [k, D], totals [k])``; a group with zero total weight has a zero mean.
    """
    w = weights.to(vectors.dtype)
    sums = torch.zeros(k, vectors.shape[1], dtype=vectors.dtype, device=vectors.device)
    sums.index_add_(0, labels, vectors * w[:, None])
    totals = torch.zeros(k, dtype=vectors.dtype, device=vectors.device).index_add_(0, labels, w)
    means = sums / totals.clamp_min(torch.finfo(vectors.dtype).tiny)[:, None]
    return means, totals


def server_step(model: torch.Tensor, target: torch.Tensor, lr: float) -> torch.Tensor:
    """``model + lr * (target - model)``, a new tensor."""
    return model + lr * (target - model)
