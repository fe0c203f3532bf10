"""Evaluation of a model on a set of samples: top-1, top-5 and mean loss.

On CPU a plain convolutional network (``nn.Sequential`` containers only) can be
evaluated with its convolutional stem in oneDNN's blocked layout (``blocked=True``):
the input is converted once with ``Tensor.to_mkldnn``, the leading convolutions,
ReLUs and max-poolings run on that layout, and the result is made dense again before
the first other layer. The layers are the model's own (no copy, no conversion of the
weights), so the logits are those of ``module(x)`` up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EvalStats", "blocked_stem", "evaluate", "evaluate_clients", "plain_layers"]

# Layers that take and give oneDNN's blocked layout
_BLOCKED = (nn.Conv2d, nn.ReLU, nn.MaxPool2d)


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


def plain_layers(module: nn.Module) -> list[nn.Module] | None:
    """The layers of a network built of ``nn.Sequential`` containers only (nested ones
    flattened), in the order its forward runs them; None for any other network."""
    if type(module) is not nn.Sequential:
        return None if len(list(module.children())) else [module]
    layers: list[nn.Module] = []
    for child in module:
        inner = plain_layers(child)
        if inner is None:
            return None
        layers += inner
    return layers


def blocked_stem(module: nn.Module) -> int:
    """How many leading layers of ``module`` can run in oneDNN's blocked layout: its
    leading 2-D convolutions, ReLUs and max-poolings when it is a plain network
    (:func:`plain_layers`) starting with a convolution; 0 otherwise."""
    layers = plain_layers(module) or []
    n = 0
    while n < len(layers) and type(layers[n]) in _BLOCKED and getattr(
            layers[n], "padding_mode", "zeros") == "zeros":
        n += 1
    return n if n and type(layers[0]) is nn.Conv2d else 0


def _forward(module: nn.Module, blocked: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """``module``'s forward, or with ``blocked`` the same layers with the stem in
    oneDNN's blocked layout (see the module docstring)."""
    stem = blocked_stem(module) if blocked else 0
    if not stem:
        if blocked:
            raise ValueError(f"{type(module).__name__} has no convolutional stem to run in "
                             "oneDNN's blocked layout")
        return module
    layers = plain_layers(module) or []

    def forward(x: torch.Tensor) -> torch.Tensor:
        h = x.to_mkldnn()
        for layer in layers[:stem]:
            h = layer(h)
        h = h.to_dense()
        for layer in layers[stem:]:
            h = layer(h)
        return h

    return forward


@torch.inference_mode()
def evaluate(module: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
             batch_size: int, blocked: bool = False) -> EvalStats:
    """Evaluate ``module`` on ``x[idx], y[idx]`` in batches of ``batch_size`` (with
    ``blocked``, the convolutional stem in oneDNN's blocked layout, CPU only)."""
    module.eval()
    forward = _forward(module, blocked)
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
                     blocked: bool = False) -> list[EvalStats]:
    """Evaluate ``module`` on each index set of ``idx`` (one per client) in one batched pass
    (``blocked`` as in :func:`evaluate`)."""
    sizes = torch.tensor([len(i) for i in idx], dtype=torch.long)
    if int(sizes.sum()) == 0:
        return [EvalStats() for _ in idx]
    flat = torch.cat(list(idx))
    owner = torch.repeat_interleave(torch.arange(len(idx)), sizes).to(x.device)
    module.eval()
    forward = _forward(module, blocked)
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
