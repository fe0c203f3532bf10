"""The vectorised engine: many clients train at once as one batched computation.

With ``torch.func`` (``functional_call``, ``vmap``, ``grad_and_value``) the loss of
every stacked client ``[C, D]`` on its own batch ``[C, B, ...]`` is differentiated in
one call, and :class:`~fedcluster.fl.optim.FlatOptimizer` steps all clients' flat
parameters and optimiser states at once. Clients are stacked in order of their step
count (most first), so at step ``s`` the clients still training are a prefix of the
stack and only they are computed: every client does exactly its own steps, and no
compute is spent on clients that have finished.

Batch orders come from the same keyed generators as in the sequential engine, so
both engines give the same updates up to float summation order. A batch smaller
than ``batch_size`` (``drop_last = false``) is padded and its padding weighted 0.

BatchNorm (per-batch statistics), Dropout (per-call randomness) and data
augmentation (drawn per batch from each client's generator) are refused: use
``run.engine = "sequential"`` for those. Data and evaluation are the sequential
engine's, which this engine holds.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from ..config import ClientConfig
from ..data.federation import Federation
from ..fl.client import LocalRule, Update, failed_update, steps_per_epoch
from ..fl.evaluate import EvalStats
from ..fl.flat import FlatModel
from ..fl.optim import FlatOptimizer
from ..rng import CLIENT, torch_gen
from .sequential import SequentialEngine

__all__ = ["VmapEngine", "vmap_unsupported"]

log = logging.getLogger(__name__)

_REFUSED = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def vmap_unsupported(module: nn.Module, augment: bool = False) -> str | None:
    """Why ``module`` (with data augmentation or not) cannot train under the vmap engine,
    or None when it can."""
    if augment:
        return ("run.engine = 'vmap' does not support data augmentation; set "
                "data.augment = false or use run.engine = 'sequential'")
    for name, sub in module.named_modules():
        if isinstance(sub, _REFUSED):
            kind = "BatchNorm" if isinstance(sub, _REFUSED[0]) else "Dropout"
            return (f"run.engine = 'vmap' does not support {kind} layers (model layer "
                    f"{name!r} is {type(sub).__name__}); use run.engine = 'sequential'")
    return None


class VmapEngine:
    """Train up to ``chunk`` clients at once (0: all of a round's clients)."""

    def __init__(self, federation: Federation, model: FlatModel, client: ClientConfig,
                 seed: int, eval_batch_size: int = 256, chunk: int = 0,
                 blocked_eval: bool = False, mu: float | None = None) -> None:
        reason = vmap_unsupported(model.module)
        if reason:
            raise ValueError(reason)
        self.model, self.client, self.seed, self.chunk = model, client, seed, chunk
        self.mu = mu  # FedProx's proximal weight (None: FedAvg's objective; fl/client.py)
        self.data = SequentialEngine(federation, model, client, seed, eval_batch_size,
                                     blocked_eval=blocked_eval)
        p = model.num_params  # buffers are viewed in their own vector, offsets from p
        self._slots = [dataclasses.replace(s, offset=s.offset - p) if s.is_buffer else s
                       for s in model.slots]
        self._grad_fn = vmap(grad_and_value(self._loss), in_dims=(0, None, 0, 0, 0))
        self._opt: FlatOptimizer | None = None

    def _loss(self, params: torch.Tensor, buffers: torch.Tensor, x: torch.Tensor,
              y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of one client's batch; ``w`` is 1 for samples, 0 for padding."""
        tensors = {s.name: s.view(buffers if s.is_buffer else params) for s in self._slots}
        logits = functional_call(self.model.module, tensors, (x,))
        losses = F.cross_entropy(logits, y, reduction="none")
        return (losses * w).sum() / w.sum()

    def _optimizer(self, like: torch.Tensor) -> FlatOptimizer:
        opt = self._opt
        if opt is None or (opt.buf is not None and opt.buf.shape[0] < like.shape[0]):
            opt = self._opt = FlatOptimizer(self.client, like)
        opt.reset()
        return opt

    def _batches(self, round_: int, clients: list[int], rule: LocalRule
                 ) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """Sample indices ``[S, C, B]``, their weights, and each client's step count."""
        cfg, d = rule.config(self.client), self.data
        bs, device = cfg.batch_size, self.model.flat.device
        orders, steps = [], []
        for c in clients:
            gen = torch_gen(*rule.key(self.seed, CLIENT, round_, c))
            idx = d.train_idx[c]
            n, per_epoch = len(idx), steps_per_epoch(len(idx), cfg)
            epochs = []
            for _ in range(cfg.local_epochs):
                order = idx[torch.randperm(n, generator=gen).to(device)]
                pad = per_epoch * bs - n
                if pad > 0:  # the last, partial batch of an epoch (drop_last = false)
                    order = torch.cat([order, order.new_full((pad,), -1)])
                epochs.append(order[:per_epoch * bs])
            orders.append(torch.cat(epochs).view(-1, bs))
            steps.append(per_epoch * cfg.local_epochs)
        s_max = max(steps)
        out = torch.full((s_max, len(clients), bs), -1, dtype=torch.long, device=device)
        for j, o in enumerate(orders):
            out[:len(o), j] = o
        weight = (out >= 0).to(self.model.flat.dtype)
        return out.clamp_min_(0), weight, steps

    def _train_chunk(self, round_: int, jobs: Sequence[tuple[int, torch.Tensor]],
                     rule: LocalRule) -> list[Update]:
        d, p = self.data, self.model.num_params
        cfg = rule.config(self.client)
        mu = self.mu if rule.mu is None else rule.mu
        order = sorted(range(len(jobs)), key=lambda j: -self._steps(jobs[j][0], cfg))
        clients = [jobs[j][0] for j in order]
        starts = torch.stack([jobs[j][1] for j in order])
        corr = torch.stack([jobs[j][2] for j in order]) if len(jobs[0]) > 2 else None
        stack = starts.clone()
        params, buffers = stack[:, :p], stack[0, p:]
        idx, weight, steps = self._batches(round_, clients, rule)
        mask = rule.trainable
        opt = self._optimizer(params)
        loss_sum = torch.zeros(len(clients), dtype=stack.dtype, device=stack.device)
        for s in range(idx.shape[0]):
            rows = sum(1 for n in steps if n > s)
            batch = idx[s, :rows]
            g, loss = self._grad_fn(params[:rows], buffers, d.train_x[batch], d.train_y[batch],
                                    weight[s, :rows])
            if mu is not None:  # FedProx: the gradient of mu/2 ||w - start||^2
                g.add_(params[:rows] - starts[:rows, :p], alpha=mu)
            if corr is not None:  # SCAFFOLD: c_k - c_i (fl/scaffold.py)
                g.add_(corr[:rows])
            opt.step(params[:rows], g, rows)
            if mask is not None:  # frozen parameters keep their start values exactly
                params[:rows] = params[:rows] * mask + starts[:rows, :p] * (1 - mask)
            loss_sum[:rows] += loss.detach()
        delta = stack - starts
        mean_loss = (loss_sum / torch.tensor(steps, device=stack.device).clamp_min(1)).tolist()
        by_job = {}
        for j, c in enumerate(clients):
            n = len(d.train_idx[c])
            by_job[order[j]] = Update(c, delta[j], n, mean_loss[j] if steps[j] else float("nan"),
                                      steps[j])
        return [by_job[j] for j in range(len(jobs))]

    def _steps(self, client: int, cfg: ClientConfig) -> int:
        return steps_per_epoch(len(self.data.train_idx[client]), cfg) * cfg.local_epochs

    def train(self, round_: int, jobs: Sequence[tuple[int, torch.Tensor]],
              corrections: torch.Tensor | None = None,
              rule: LocalRule | None = None) -> Iterator[Update]:
        """Train each ``(client, start)``; ``corrections`` (``[jobs, params]``) are added to
        each client's every gradient, ``rule`` changes this call's objective (as in the
        sequential engine)."""
        rule = rule or LocalRule()
        if corrections is not None:
            jobs = [(c, s, corrections[j]) for j, (c, s) in enumerate(jobs)]
        size = self.chunk or max(len(jobs), 1)
        for lo in range(0, len(jobs), size):
            yield from self._train_guarded(round_, jobs[lo:lo + size], rule)

    def _train_guarded(self, round_: int, jobs: Sequence[tuple[int, torch.Tensor]],
                       rule: LocalRule) -> list[Update]:
        """The chunk's updates; when training it raises, each client is trained alone, so
        only the clients that fail become failed updates (fl/validate.py leaves them out)."""
        try:
            return self._train_chunk(round_, jobs, rule)
        except Exception as e:
            if len(jobs) == 1:
                c, start = jobs[0][:2]
                log.debug("round %d: client %d failed", round_, c, exc_info=True)
                return [failed_update(c, start, len(self.data.train_idx[c]), e)]
        return [u for job in jobs for u in self._train_guarded(round_, [job], rule)]

    def evaluate(self, vector: torch.Tensor, clients: Sequence[int]) -> EvalStats:
        return self.data.evaluate(vector, clients)

    def evaluate_clients(self, vector: torch.Tensor, clients: Sequence[int]) -> list[EvalStats]:
        return self.data.evaluate_clients(vector, clients)

    def evaluate_own(self, clients: Sequence[int], model_of: Callable[[int], torch.Tensor]
                     ) -> list[EvalStats]:
        return self.data.evaluate_own(clients, model_of)

    def client_losses(self, vectors: torch.Tensor, clients: Sequence[int]) -> torch.Tensor:
        return self.data.client_losses(vectors, clients)
