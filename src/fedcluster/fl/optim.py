"""Optimisers over flat parameter vectors, for one client or many stacked clients at once.

The update rules are those of ``torch.optim.SGD`` (momentum, dampening 0, L2 weight
decay) and ``torch.optim.Adam`` (Kingma & Ba, "Adam: A Method for Stochastic
Optimization", ICLR 2015, with PyTorch's bias correction and L2 weight decay), written
as in-place operations on a vector ``[D]`` or a stack ``[C, D]``. The state is
allocated once per engine and zeroed per client, so training allocates no optimiser
per client and steps all parameters with a handful of kernels.

All clients of a stack start together, so they share the step count. Stacked clients
are ordered by their number of steps (most first), so the clients still training at
any step are a prefix of the stack: ``step(..., rows=n)`` steps the first ``n`` rows
and leaves the others (finished clients) exactly as they are.
"""

from __future__ import annotations

import torch

from ..config import ClientConfig

__all__ = ["FlatOptimizer"]

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults


class FlatOptimizer:
    """SGD (with momentum) or Adam on parameters shaped like ``like`` (``[D]`` or ``[C, D]``)."""

    def __init__(self, cfg: ClientConfig, like: torch.Tensor) -> None:
        self.cfg = cfg
        self.adam = cfg.optimizer == "adam"
        self.buf = torch.zeros_like(like) if self.adam or cfg.momentum > 0 else None
        self.sq = torch.zeros_like(like) if self.adam else None
        self.t = 0

    def reset(self) -> None:
        """Forget all state: the next step is a first step (a new client starts)."""
        for s in (self.buf, self.sq):
            if s is not None:
                s.zero_()
        self.t = 0

    @torch.no_grad()
    def step(self, params: torch.Tensor, grad: torch.Tensor, rows: int | None = None) -> None:
        """One step on ``params`` in place (``grad`` may be overwritten).

        With ``rows``, ``params`` and ``grad`` are the first ``rows`` rows of the stack.
        """
        cfg = self.cfg
        self.t += 1
        buf = None if self.buf is None else self.buf[:rows] if rows is not None else self.buf
        if cfg.weight_decay:
            grad.add_(params, alpha=cfg.weight_decay)
        if self.adam:
            sq = self.sq[:rows] if rows is not None else self.sq
            buf.lerp_(grad, 1 - BETA1)
            sq.mul_(BETA2).addcmul_(grad, grad, value=1 - BETA2)
            denom = sq.sqrt().div_((1 - BETA2 ** self.t) ** 0.5).add_(EPS)
            params.addcdiv_(buf, denom, value=-cfg.lr / (1 - BETA1 ** self.t))
        elif buf is not None:  # a zero buffer makes the first step buf = grad, as torch does
            buf.mul_(cfg.momentum).add_(grad)
            params.add_(buf, alpha=-cfg.lr)
        else:
            params.add_(grad, alpha=-cfg.lr)
