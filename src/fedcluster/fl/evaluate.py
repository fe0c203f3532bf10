"""Evaluation of a model on a set of samples: top-1, top-5 and mean loss.

``forward`` (default: the module itself) may be another function computing the same
logits, such as the blocked-layout forward of :mod:`fedcluster.engines.tuning`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EvalStats", "Forward", "evaluate", "evaluate_clients"]

Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class EvalStats:
    """Sums over evaluated samples; combine with ``+``, read the rates as properties."""

    n: int = 0
    correct: float = 0.0
    correct5: float = 0.0
    loss_sum: float = 0.0

    def __add__(self, other: EvalStats) -> EvalStats:
        return EvalStats(self.n + other.n, self.correct + other.correct,
                         self.correct5 + other.correct5, self.loss_sum + other.loss_sum)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else math.nan

    @property
    def top5(self) -> float:
        return self.correct5 / self.n if self.n else math.nan

    @property
    def loss(self) -> float:
        return self.loss_sum / self.n if self.n else math.nan


@torch.inference_mode()
def evaluate(module: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
             batch_size: int, forward: Forward | None = None) -> EvalStats:
    """Evaluate ``module`` on ``x[idx], y[idx]`` in batches of ``batch_size`` (its logits
    computed by ``forward``, default ``module``)."""
    module.eval()
    forward = forward or module
    correct = correct5 = loss_sum = torch.zeros((), device=x.device)
    for s in range(0, len(idx), batch_size):
        batch = idx[s:s + batch_size]
        logits, target = forward(x[batch]), y[batch]
        loss_sum = loss_sum + F.cross_entropy(logits, target, reduction="sum")
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == target[:, None]
        correct = correct + hits[:, 0].sum()
        correct5 = correct5 + hits.any(dim=1).sum()
    return EvalStats(len(idx), float(correct), float(correct5), float(loss_sum))


@torch.inference_mode()
def evaluate_clients(module: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     idx: Sequence[torch.Tensor], batch_size: int,
                     forward: Forward | None = None) -> list[EvalStats]:
    """Evaluate ``module`` on each index set of ``idx`` (one per client) in one batched pass
    (``forward`` as in :func:`evaluate`)."""
    sizes = torch.tensor([len(i) for i in idx], dtype=torch.long)
    if int(sizes.sum()) == 0:
        return [EvalStats() for _ in idx]
    flat = torch.cat(list(idx))
    owner = torch.repeat_interleave(torch.arange(len(idx)), sizes).to(x.device)
    module.eval()
    forward = forward or module
    sums = torch.zeros(3, len(idx), device=x.device, dtype=torch.float64)
    for s in range(0, len(flat), batch_size):
        batch, who = flat[s:s + batch_size], owner[s:s + batch_size]
        logits, target = forward(x[batch]), y[batch]
        loss = F.cross_entropy(logits, target, reduction="none")
        hits = logits.topk(min(5, logits.shape[1]), dim=1).indices == target[:, None]
        stats = torch.stack([hits[:, 0], hits.any(dim=1)]).to(sums.dtype)
        sums.index_add_(1, who, torch.cat([stats, loss[None].to(sums.dtype)]))
    out = sums.cpu().tolist()
    return [EvalStats(int(n), out[0][i], out[1][i], out[2][i])
            for i, n in enumerate(sizes.tolist())]
