"""The centralised baseline: one model trained on the pooled training data of all clients.

``mode = "centralized"`` (or ``fedcluster run --centralized``) trains the same
model with the same optimiser, batch size and augmentation on the union of the
clients' training sets, one epoch per "round", keeping one optimiser for the
whole run, and evaluates on the whole test set after every epoch. It reports
through the same callbacks and writes the same metrics file as a federated run
(one cluster; the pooled data appears as client -1), so the two plot side by side.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .callbacks.base import Callback, CallbackList
from .config import Config
from .data import build_augment
from .data.device import device_images
from .engines.layout import blocked_forward
from .engines.tuning import use_blocked_eval
from .fl.client import make_optimizer
from .fl.evaluate import evaluate
from .records import ClientResult, ClusterResult, RoundResult, RunSummary
from .rng import CLIENT, torch_gen
from .run import build_context

__all__ = ["POOLED", "run_centralized"]

POOLED = -1  # the client id under which the pooled data's training loss is recorded


def run_centralized(cfg: Config, callbacks: Sequence[Callback] = (),
                    run_dir: Path | None = None) -> RunSummary:
    """Train on the pooled data for ``cfg.rounds`` epochs, evaluating after each."""
    cfg = dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, k=1))
    ctx = build_context(cfg, run_dir, parallel_clients=False)
    ds, device, model = ctx.federation.dataset, ctx.device, ctx.model
    train_x, test_x = device_images(ds, device)
    train_y, test_y = ds.train_y.to(device), ds.test_y.to(device)
    pooled = torch.from_numpy(np.unique(np.concatenate(ctx.federation.train_idx))).to(device)
    test_idx = torch.arange(len(test_y), device=device)
    augment = build_augment(ds.augmentation, ds.mean, ds.std, cfg.data.augment)
    module = model.module
    blocked = use_blocked_eval(cfg.run.eval_layout, cfg.model.name, module, device)
    opt = make_optimizer(module.parameters(), cfg.client)
    bs, n = cfg.client.batch_size, len(pooled)
    per_epoch = n // bs if cfg.client.drop_last else math.ceil(n / bs)
    members = list(range(ctx.federation.num_clients))
    cbs = CallbackList(callbacks)
    rounds: list[RoundResult] = []
    t_run = time.perf_counter()
    cbs.run_start(ctx)
    try:
        for r in range(1, cfg.rounds + 1):
            t0 = time.perf_counter()
            cbs.round_start(r, [POOLED])
            gen = torch_gen(cfg.seed, CLIENT, r, ctx.federation.num_clients)
            order = pooled[torch.randperm(n, generator=gen).to(device)]
            module.train()
            loss_sum = torch.zeros((), device=device)
            for s in range(per_epoch):
                batch = order[s * bs:(s + 1) * bs]
                xb = train_x[batch] if augment is None else augment(train_x[batch], gen)
                loss = F.cross_entropy(module(xb), train_y[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.detach()
            stats = evaluate(module, test_x, test_y, test_idx, cfg.run.eval_batch_size,
                             blocked_forward(module) if blocked else None)
            train_loss = loss_sum.item() / per_epoch if per_epoch else math.nan
            rounds.append(RoundResult(
                r, stats.accuracy, stats.top5, stats.loss,
                [ClusterResult(0, members, stats.accuracy, stats.top5, stats.loss, stats.n)],
                [ClientResult(POOLED, 0, train_loss, n, per_epoch)],
                time.perf_counter() - t0))
            if cbs.round_end(rounds[-1]):
                break
    except BaseException as e:
        cbs.run_end(RunSummary(ctx, rounds, model.vector()[None], time.perf_counter() - t_run,
                               error=f"{type(e).__name__}: {e}"))
        raise
    stopped = len(rounds) < cfg.rounds
    summary = RunSummary(ctx, rounds, model.vector()[None], time.perf_counter() - t_run, stopped)
    cbs.run_end(summary)
    return summary
