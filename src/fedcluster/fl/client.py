"""Local training of one client, starting from a given flat model vector."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ClientConfig
from .flat import FlatModel
from .optim import FlatOptimizer

__all__ = ["LocalRule", "Update", "failed_update", "local_train", "make_optimizer",
           "steps_per_epoch"]


@dataclass(frozen=True)
class Update:
    """What a client reports: its model change, how much data it has, and how training went."""

    client: int
    delta: torch.Tensor  # local - start, flat
    num_examples: int  # the client's training-set size, the aggregation weight
    train_loss: float  # mean loss over its local steps (nan when it took none)
    steps: int
    owned: bool = True  # trained by this process (several processes: see dist/engine.py)
    error: str | None = None  # why training failed (the delta is then zeros; fl/validate.py)


@dataclass(frozen=True)
class LocalRule:
    """How one training call departs from the engine's usual local objective (personalised
    algorithms train twice or in phases: fl/personal.py)."""

    mu: float | None = None  # a proximal weight instead of the engine's (fl/client.py)
    trainable: torch.Tensor | None = None  # [P] 1.0 where parameters move, 0.0 frozen
    epochs: int | None = None  # local epochs instead of client.local_epochs
    stream: int = 0  # 0: the round's batch order; another number: an independent one

    def config(self, cfg: ClientConfig) -> ClientConfig:
        """``cfg`` with this rule's epoch count."""
        return cfg if self.epochs is None else dataclasses.replace(cfg, local_epochs=self.epochs)

    def key(self, *key: int) -> tuple[int, ...]:
        """The batch-order key of a client's training (``key`` = seed, tag, round, client)."""
        return key if self.stream == 0 else (*key, self.stream)


def failed_update(client: int, start: torch.Tensor, num_examples: int,
                  error: BaseException) -> Update:
    """The update of a client whose training raised ``error``: a zero delta, no steps."""
    return Update(client, torch.zeros_like(start), num_examples, math.nan, 0,
                  error=f"{type(error).__name__}: {error}")


def make_optimizer(params: Iterable[nn.Parameter], cfg: ClientConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def steps_per_epoch(n: int, cfg: ClientConfig) -> int:
    """Local steps in one epoch over ``n`` samples (``drop_last`` drops a partial batch)."""
    return n // cfg.batch_size if cfg.drop_last else math.ceil(n / cfg.batch_size)


def local_train(model: FlatModel, start: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                idx: torch.Tensor, cfg: ClientConfig, generator: torch.Generator,
                augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                opt: FlatOptimizer | None = None,
                grad: torch.Tensor | None = None,
                prox_mu: float | None = None,
                correction: torch.Tensor | None = None,
                trainable: torch.Tensor | None = None) -> tuple[torch.Tensor, float, int]:
    """Train ``model`` from ``start`` on samples ``x[idx], y[idx]``; return (delta, loss, steps).

    ``start`` is copied into the model, never aliased; batch order comes from ``generator``,
    and so does the batch augmentation ``augment(x_batch, generator)`` when given.
    ``opt`` and ``grad`` (from :meth:`FlatModel.attach_grad`) may be passed in to be reused
    across clients; the optimiser is reset here.

    With ``prox_mu`` the objective is FedProx's (Li et al., "Federated Optimization in
    Heterogeneous Networks", MLSys 2020): the loss plus ``prox_mu / 2 * ||w - start||^2``
    over the parameters, whose gradient ``prox_mu * (w - start)`` is added to each step's
    (the reported loss is the data loss alone). ``prox_mu = 0`` adds zeros: FedAvg's steps.
    ``correction`` (``[num_params]``, SCAFFOLD's ``c_k - c_i``) is added to every step's
    gradient. ``trainable`` (``[num_params]``, 1.0 or 0.0) freezes the parameters where it
    is 0: they keep their start values exactly after every step (FedRep's phases).
    """
    model.load(start)
    module = model.module
    module.train()
    if grad is None:
        grad = model.attach_grad()
    params = model.flat[:model.num_params]
    if opt is None:
        opt = FlatOptimizer(cfg, params)
    opt.reset()
    n, bs = len(idx), cfg.batch_size
    per_epoch = steps_per_epoch(n, cfg)
    loss_sum = torch.zeros((), device=x.device)
    anchor = start[:model.num_params]
    diff = torch.empty_like(params) if prox_mu is not None else None
    frozen = None if trainable is None else anchor * (1 - trainable)
    steps = 0
    for _ in range(cfg.local_epochs):
        order = idx[torch.randperm(n, generator=generator).to(idx.device)]
        for s in range(per_epoch):
            batch = order[s * bs:(s + 1) * bs]
            xb = x[batch] if augment is None else augment(x[batch], generator)
            grad.zero_()
            loss = F.cross_entropy(module(xb), y[batch])
            loss.backward()
            if diff is not None:  # FedProx: the gradient of prox_mu/2 ||w - start||^2
                grad.add_(torch.sub(params.detach(), anchor, out=diff), alpha=prox_mu)
            if correction is not None:
                grad.add_(correction)
            opt.step(params.detach(), grad)
            if frozen is not None:  # x * 1 + 0 and 0 + start are exact: frozen stay put
                params.detach().mul_(trainable).add_(frozen)
            loss_sum += loss.detach()
            steps += 1
    delta = model.flat.detach() - start
    return delta, (loss_sum.item() / steps) if steps else math.nan, steps
