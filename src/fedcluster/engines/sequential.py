"""The sequential engine: one process trains the sampled clients one after another,
or ``workers`` of them at a time in threads.

All data sits on the training device as normalised float tensors, loaded once
(datasets too large for that are gathered per batch, see ``data.device``); a
client's batches are gathered by indexing, its batch order and augmentation drawn
from a generator keyed by ``(seed, round, client)``. The flat gradient and the
optimiser state are allocated once and reused by every client, so the hot loop
allocates nothing per client beyond the activations of its steps.

With ``workers > 1`` each worker thread owns a replica of the model (with its own
gradient and optimiser state) and takes the next client as it finishes one; torch
releases the GIL inside its kernels, so on CPU W workers of one intra-op thread each
keep W cores busy where one small training step cannot (mnist-cnn trains 1.3x, the
8x8 digits CNN 1.7x faster with 2 workers than with one 2-thread process on 2 cores).
A client's update does not depend on which worker trained it, so the updates are
those of a one-worker run; evaluation splits the samples among the workers. The
calling thread's torch threads are shared out among the workers (each worker thread
sets its own count) and stay the caller's for the server's work between rounds.
"""

from __future__ import annotations

import copy
import logging
import queue
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from ..config import ClientConfig
from ..data.augment import Augment
from ..data.device import device_images
from ..data.federation import Federation
from ..fl.client import LocalRule, Update, failed_update, local_train
from ..fl.evaluate import EvalStats, Forward, evaluate, evaluate_clients
from ..fl.flat import FlatModel
from ..fl.optim import FlatOptimizer
from ..rng import CLIENT, torch_gen
from .layout import blocked_forward

__all__ = ["SequentialEngine"]

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Replica:
    """One worker's model, flat gradient and optimiser state."""

    model: FlatModel
    grad: torch.Tensor
    opt: FlatOptimizer


def _replica(model: FlatModel, client: ClientConfig) -> _Replica:
    params = model.flat[:model.num_params]
    return _Replica(model, model.attach_grad(), FlatOptimizer(client, params))


class SequentialEngine:
    def __init__(self, federation: Federation, model: FlatModel, client: ClientConfig,
                 seed: int, eval_batch_size: int = 256, augment: Augment | None = None,
                 workers: int = 1, blocked_eval: bool = False,
                 mu: float | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        device = model.flat.device
        ds = federation.dataset
        self.model, self.client, self.seed = model, client, seed
        self.mu = mu  # FedProx's proximal weight (None: FedAvg's objective; fl/client.py)
        self.eval_batch_size, self.augment = eval_batch_size, augment
        self.blocked_eval = blocked_eval
        self.train_x, self.test_x = device_images(ds, device)
        self.train_y = ds.train_y.to(device)
        self.test_y = ds.test_y.to(device)
        self.train_idx = [torch.from_numpy(i).to(device) for i in federation.train_idx]
        self.eval_idx = [torch.from_numpy(i).to(device) for i in federation.eval_idx]
        twins = [FlatModel(copy.deepcopy(model.module), model.channels_last)
                 for _ in range(workers - 1)]
        self.replicas = [_replica(m, client) for m in [model, *twins]]
        self._free: queue.SimpleQueue[_Replica] = queue.SimpleQueue()
        for r in self.replicas:
            self._free.put(r)
        self._pool = None
        if workers > 1:  # each worker thread on its share of the caller's torch threads
            share = max(1, torch.get_num_threads() // workers)
            self._pool = ThreadPoolExecutor(workers, "fedcluster-worker",
                                            initializer=torch.set_num_threads, initargs=(share,))

    @property
    def workers(self) -> int:
        return len(self.replicas)

    def _map(self, fn: Callable[[_Replica, T], object], items: Sequence[T],
             cost: Sequence[int] | None = None) -> Iterator:
        """``fn(replica, item)`` for each item, results in order; on the worker threads when
        there are several, each call holding a replica no other call uses meanwhile, the
        costliest items started first (so a large client does not start last)."""
        if self._pool is None:
            return (fn(self.replicas[0], item) for item in items)

        def task(item: T) -> object:
            replica = self._free.get()
            try:
                return fn(replica, item)
            finally:
                self._free.put(replica)

        order = range(len(items)) if cost is None else np.argsort(-np.asarray(cost),
                                                                  kind="stable")
        futures = {int(i): self._pool.submit(task, items[i]) for i in order}

        def results() -> Iterator:
            try:
                for i in range(len(items)):
                    yield futures[i].result()
            finally:  # left early (an error, a stop): the items not started never start
                for f in futures.values():
                    f.cancel()

        return results()

    def _train_one(self, r: _Replica, round_: int, rule: LocalRule, client: int,
                   start: torch.Tensor, correction: torch.Tensor | None = None) -> Update:
        gen = torch_gen(*rule.key(self.seed, CLIENT, round_, client))
        idx = self.train_idx[client]
        mu = self.mu if rule.mu is None else rule.mu
        try:
            delta, loss, steps = local_train(r.model, start, self.train_x, self.train_y, idx,
                                             rule.config(self.client), gen, self.augment, r.opt,
                                             r.grad, mu, correction, rule.trainable)
        except Exception as e:  # the client fails, not the run: the server leaves it out
            log.debug("round %d: client %d failed", round_, client, exc_info=True)
            return failed_update(client, start, len(idx), e)
        return Update(client, delta, len(idx), loss, steps)

    def train(self, round_: int, jobs: Sequence[tuple[int, torch.Tensor]],
              corrections: torch.Tensor | None = None,
              rule: LocalRule | None = None) -> Iterator[Update]:
        """Train each ``(client, start)``; ``corrections`` (``[jobs, params]``: SCAFFOLD's,
        FedDyn's, Ditto's) are added to each client's every gradient; ``rule`` changes the
        objective, the epochs or the frozen parameters of this call."""
        jobs = list(jobs)
        rule = rule or LocalRule()
        sizes = [len(self.train_idx[c]) for c, _ in jobs]
        if corrections is not None:
            jobs = [(c, s, corrections[j]) for j, (c, s) in enumerate(jobs)]
        yield from self._map(lambda r, job: self._train_one(r, round_, rule, *job), jobs, sizes)

    def _forward(self, r: _Replica) -> Forward | None:
        return blocked_forward(r.model.module) if self.blocked_eval else None

    def _shares(self, sizes: Sequence[int]) -> list[slice]:
        """Cut items of ``sizes`` into up to ``workers`` runs of about equal total size,
        at whole items."""
        if self.workers == 1 or len(sizes) < 2:
            return [slice(0, len(sizes))]
        ends = np.cumsum(sizes)
        cuts = np.searchsorted(ends, ends[-1] * np.arange(1, self.workers) / self.workers)
        bounds = [0, *sorted(set(int(c) + 1 for c in cuts if c + 1 < len(sizes))), len(sizes)]
        return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def evaluate(self, vector: torch.Tensor, clients: Sequence[int]) -> EvalStats:
        if len(clients) == 0:
            return EvalStats()
        idx = torch.cat([self.eval_idx[c] for c in clients])
        bs = self.eval_batch_size
        batches = [min(bs, len(idx) - s) for s in range(0, len(idx), bs)]

        def part(r: _Replica, share: slice) -> EvalStats:  # whole batches, as one worker's
            r.model.load(vector)
            return evaluate(r.model.module, self.test_x, self.test_y,
                            idx[share.start * bs:share.stop * bs], bs, self._forward(r))

        return sum(self._map(part, self._shares(batches)), EvalStats())

    def _per_client(self, vector: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                    idx: Sequence[torch.Tensor]) -> list[EvalStats]:
        def part(r: _Replica, share: slice) -> list[EvalStats]:
            r.model.load(vector)
            return evaluate_clients(r.model.module, x, y, idx[share], self.eval_batch_size,
                                    self._forward(r))

        return [s for stats in self._map(part, self._shares([len(i) for i in idx]))
                for s in stats]

    def evaluate_clients(self, vector: torch.Tensor, clients: Sequence[int]) -> list[EvalStats]:
        return self._per_client(vector, self.test_x, self.test_y,
                                [self.eval_idx[c] for c in clients])

    def evaluate_own(self, clients: Sequence[int], model_of: Callable[[int], torch.Tensor]
                     ) -> list[EvalStats]:
        """Each client with its own model on its own eval set (as ``evaluate_clients(
        model_of(c), [c])`` for each ``c``, the clients spread over the workers)."""
        def one(r: _Replica, c: int) -> EvalStats:
            r.model.load(model_of(c))
            return evaluate_clients(r.model.module, self.test_x, self.test_y,
                                    [self.eval_idx[c]], self.eval_batch_size,
                                    self._forward(r))[0]

        clients = list(clients)
        return list(self._map(one, clients, [len(self.eval_idx[c]) for c in clients]))

    def client_losses(self, vectors: torch.Tensor, clients: Sequence[int]) -> torch.Tensor:
        out = torch.empty(len(clients), len(vectors), dtype=torch.float64)
        idx = [self.train_idx[c] for c in clients]
        for j, vector in enumerate(vectors):
            stats = self._per_client(vector, self.train_x, self.train_y, idx)
            out[:, j] = torch.tensor([s.loss for s in stats], dtype=torch.float64)
        return out
