"""The centralised baseline: one model trained on the pooled training data of all clients.

``mode = "centralized"`` (or ``fedcluster run --centralized``) trains the same
model with the same optimiser, batch size and augmentation on the union of the
clients' training sets, one epoch per "round", keeping one optimiser for the
whole run (its state is part of the run state, so a resumed run continues it), and
evaluates on the whole test set after every epoch. It goes through the same round
loop (loop.py), callbacks and metrics file as a federated run (one cluster; the
pooled data appears as client -1), so the two plot side by side.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..callbacks.base import CallbackList
from ..config import Config
from ..data import build_augment
from ..data.device import device_images
from ..fl.client import make_optimizer, steps_per_epoch
from ..fl.evaluate import evaluate
from ..fl.state import RunState, new_state
from ..profiling import Profiler
from ..records import ClientResult, ClusterResult, RoundResult, RunContext
from ..rng import CLIENT, torch_gen
from .layout import blocked_forward
from .tuning import use_blocked_eval

__all__ = ["POOLED", "PooledRounds"]

POOLED = -1  # the client id under which the pooled data's training loss is recorded


class PooledRounds:
    """One epoch over the pooled data per round (see the module docstring)."""

    restarts, restart_rounds = 1, 0

    def __init__(self, cfg: Config, ctx: RunContext) -> None:
        ds, device = ctx.federation.dataset, ctx.device
        self.cfg, self.model, self.device = cfg, ctx.model, device
        self.num_clients = ctx.federation.num_clients
        self.train_x, self.test_x = device_images(ds, device)
        self.train_y, self.test_y = ds.train_y.to(device), ds.test_y.to(device)
        pooled = np.unique(np.concatenate(ctx.federation.train_idx))
        self.pooled = torch.from_numpy(pooled).to(device)
        self.augment = build_augment(ds.augmentation, ds.mean, ds.std, cfg.data.augment)
        module = self.model.module
        blocked = use_blocked_eval(cfg.run.eval_layout, cfg.model.name, module, device)
        self.forward = blocked_forward(module) if blocked else None
        self.opt = make_optimizer(module.parameters(), cfg.client)

    def init(self, restart: int = 0) -> RunState:
        return new_state(self.model.vector(), self.num_clients)

    def score(self, state: RunState) -> float:
        return 0.0

    def _load(self, state: RunState) -> None:
        """The model and the optimiser as ``state`` left them (copies: the state stays as
        it is while they train)."""
        self.model.load(state.models[0])
        saved = self.opt.state_dict()
        per_param: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in state.extra.items():
            _, index, name = key.split(".", 2)
            per_param.setdefault(int(index), {})[name] = value.clone()
        self.opt.load_state_dict({"state": per_param, "param_groups": saved["param_groups"]})

    def _saved(self) -> dict[str, torch.Tensor]:
        return {f"opt.{i}.{name}": value.detach().clone()
                for i, values in self.opt.state_dict()["state"].items()
                for name, value in values.items() if isinstance(value, torch.Tensor)}

    def __call__(self, state: RunState, round_: int, callbacks: CallbackList,
                 prof: Profiler) -> tuple[RunState, RoundResult]:
        cfg, module = self.cfg, self.model.module
        t0 = time.perf_counter()
        callbacks.round_start(round_, [POOLED])
        self._load(state)
        bs, n = cfg.client.batch_size, len(self.pooled)
        per_epoch = steps_per_epoch(n, cfg.client)
        with prof.section("train"):
            gen = torch_gen(cfg.seed, CLIENT, round_, self.num_clients)
            order = self.pooled[torch.randperm(n, generator=gen).to(self.device)]
            module.train()
            loss_sum = torch.zeros((), device=self.device)
            for s in range(per_epoch):
                batch = order[s * bs:(s + 1) * bs]
                x = self.train_x[batch]
                xb = x if self.augment is None else self.augment(x, gen)
                loss = F.cross_entropy(module(xb), self.train_y[batch])
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                loss_sum += loss.detach()
        with prof.section("eval"):
            test_idx = torch.arange(len(self.test_y), device=self.device)
            stats = evaluate(module, self.test_x, self.test_y, test_idx, cfg.run.eval_batch_size,
                             self.forward)
        train_loss = loss_sum.item() / per_epoch if per_epoch else math.nan
        members = list(range(self.num_clients))
        result = RoundResult(
            round_, stats.accuracy, stats.top5, stats.loss,
            [ClusterResult(0, members, stats.accuracy, stats.top5, stats.loss, stats.n)],
            [ClientResult(POOLED, 0, train_loss, n, per_epoch)],
            time.perf_counter() - t0, profile=prof.pop())
        state = dataclasses.replace(state, round=round_, models=self.model.vector()[None],
                                    extra=self._saved())
        return state, result
