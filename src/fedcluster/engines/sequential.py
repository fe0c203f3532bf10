"""The sequential engine: one process trains the sampled clients one after another.

All data sits on the training device as normalised float tensors, loaded once
(datasets too large for that are gathered per batch, see ``data.device``); a
client's batches are gathered by indexing, its batch order and augmentation drawn
from a generator keyed by ``(seed, round, client)``. The flat gradient and the
optimiser state are allocated once and reused by every client, so the hot loop
allocates nothing per client beyond the activations of its steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from ..config import ClientConfig
from ..data.augment import Augment
from ..data.device import device_images
from ..data.federation import Federation
from ..fl.client import Update, local_train
from ..fl.evaluate import EvalStats, evaluate, evaluate_clients
from ..fl.flat import FlatModel
from ..fl.optim import FlatOptimizer
from ..rng import CLIENT, torch_gen

__all__ = ["SequentialEngine"]


class SequentialEngine:
    def __init__(self, federation: Federation, model: FlatModel, client: ClientConfig,
                 seed: int, eval_batch_size: int = 256, augment: Augment | None = None) -> None:
        device = model.flat.device
        ds = federation.dataset
        self.model, self.client, self.seed = model, client, seed
        self.eval_batch_size, self.augment = eval_batch_size, augment
        self.train_x, self.test_x = device_images(ds, device)
        self.train_y = ds.train_y.to(device)
        self.test_y = ds.test_y.to(device)
        self.train_idx = [torch.from_numpy(i).to(device) for i in federation.train_idx]
        self.eval_idx = [torch.from_numpy(i).to(device) for i in federation.eval_idx]
        self.grad = model.attach_grad()
        self.opt = FlatOptimizer(client, model.flat[:model.num_params])

    def train(self, round_: int, jobs: Sequence[tuple[int, torch.Tensor]]) -> Iterator[Update]:
        for client, start in jobs:
            gen = torch_gen(self.seed, CLIENT, round_, client)
            idx = self.train_idx[client]
            delta, loss, steps = local_train(self.model, start, self.train_x, self.train_y, idx,
                                             self.client, gen, self.augment, self.opt, self.grad)
            yield Update(client, delta, len(idx), loss, steps)

    def evaluate(self, vector: torch.Tensor, clients: Sequence[int]) -> EvalStats:
        if len(clients) == 0:
            return EvalStats()
        idx = torch.cat([self.eval_idx[c] for c in clients])
        self.model.load(vector)
        return evaluate(self.model.module, self.test_x, self.test_y, idx, self.eval_batch_size)

    def evaluate_clients(self, vector: torch.Tensor, clients: Sequence[int]) -> list[EvalStats]:
        self.model.load(vector)
        return evaluate_clients(self.model.module, self.test_x, self.test_y,
                                [self.eval_idx[c] for c in clients], self.eval_batch_size)

    def client_losses(self, vectors: torch.Tensor, clients: Sequence[int]) -> torch.Tensor:
        out = torch.empty(len(clients), len(vectors), dtype=torch.float64)
        idx = [self.train_idx[c] for c in clients]
        for j, vector in enumerate(vectors):
            self.model.load(vector)
            stats = evaluate_clients(self.model.module, self.train_x, self.train_y, idx,
                                     self.eval_batch_size)
            out[:, j] = torch.tensor([s.loss for s in stats], dtype=torch.float64)
        return out
