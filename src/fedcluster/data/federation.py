"""The federation: which training and evaluation samples belong to which client."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import DataConfig
from ..rng import PARTITION, numpy_rng
from .partition import PartitionError, dirichlet, eval_split, iid, shards
from .sources import ArrayDataset

__all__ = ["Federation", "build_federation"]


@dataclass(frozen=True)
class Federation:
    """Client ``c`` trains on ``dataset.train_x[train_idx[c]]`` and is evaluated on
    ``dataset.test_x[eval_idx[c]]``."""

    dataset: ArrayDataset
    train_idx: list[np.ndarray]
    eval_idx: list[np.ndarray]

    @property
    def num_clients(self) -> int:
        return len(self.train_idx)

    def train_sizes(self) -> np.ndarray:
        return np.array([len(i) for i in self.train_idx])

    def label_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-client label counts ``[clients, classes]`` for training and evaluation."""
        k = self.dataset.num_classes
        ytr, yte = self.dataset.train_y.numpy(), self.dataset.test_y.numpy()
        train = np.stack([np.bincount(ytr[i], minlength=k) for i in self.train_idx])
        test = np.stack([np.bincount(yte[i], minlength=k) for i in self.eval_idx])
        return train, test


def build_federation(dataset: ArrayDataset, cfg: DataConfig, seed: int) -> Federation:
    """Partition ``dataset`` over ``cfg.num_clients`` clients, keyed by ``seed``."""
    rng = numpy_rng(seed, PARTITION)
    labels = dataset.train_y.numpy()
    n = cfg.num_clients
    if cfg.partition == "iid":
        parts = iid(labels, n, rng)
    elif cfg.partition == "dirichlet":
        parts = dirichlet(labels, n, cfg.alpha, rng, min_size=cfg.min_size)
    else:
        parts = shards(labels, n, cfg.shards_per_client, rng)
    smallest = min(len(p) for p in parts)
    if smallest < cfg.min_size:
        raise PartitionError(
            f"data.partition = {cfg.partition!r} gave a client {smallest} samples, fewer than "
            f"data.min_size = {cfg.min_size}; use fewer clients or lower data.min_size"
        )
    evals = eval_split(labels, parts, dataset.test_y.numpy(), rng)
    return Federation(dataset, [p.astype(np.int64) for p in parts], evals)
