"""Partitions: pure, seeded functions ``(labels, num_clients, ..., rng) -> list[index array]``.

Every partition is disjoint and (for iid and dirichlet) covers all samples. The
minimum client size is enforced by redrawing, at most ``max_retries`` times.

:data:`PARTITIONS` holds them by name (``data.partition``), each as a function
``(labels, num_clients, cfg: DataConfig, rng) -> list[index array]`` that reads its own
settings from ``cfg``; a plugin registers its own with ``@PARTITIONS.register("name")``.
(``"local"``, each site's own data, is no split of one dataset and is handled by the
federation itself.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ..registry import Registry

if TYPE_CHECKING:
    from ..config import DataConfig

__all__ = ["PARTITIONS", "PartitionError", "dirichlet", "eval_split", "iid", "shards"]


class PartitionError(ValueError):
    """A partition could not meet its constraints."""


def iid(labels: np.ndarray, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle and cut into ``num_clients`` near-equal parts."""
    return [np.sort(p) for p in np.array_split(rng.permutation(len(labels)), num_clients)]


def _dirichlet_once(labels: np.ndarray, num_clients: int, alpha: float,
                    rng: np.random.Generator) -> list[np.ndarray]:
    parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        p = rng.dirichlet(np.full(num_clients, alpha))
        cuts = np.floor(np.cumsum(p) * len(idx)).astype(int)[:-1]
        for client, chunk in enumerate(np.split(idx, cuts)):
            parts[client].append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def dirichlet(labels: np.ndarray, num_clients: int, alpha: float, rng: np.random.Generator,
              min_size: int = 0, max_retries: int = 100) -> list[np.ndarray]:
    """The reference's non-IID split: per class, client shares ~ Dirichlet(alpha)."""
    if alpha <= 0:
        raise PartitionError(f"dirichlet alpha must be > 0, got {alpha}")
    if min_size * num_clients > len(labels):
        raise PartitionError(
            f"{num_clients} clients x min_size {min_size} exceeds the {len(labels)} samples"
        )
    smallest = 0
    for _ in range(max_retries):
        parts = _dirichlet_once(labels, num_clients, alpha, rng)
        smallest = min(len(p) for p in parts)
        if smallest >= min_size:
            return parts
    raise PartitionError(
        f"dirichlet split (alpha={alpha}, {num_clients} clients, {len(labels)} samples) gave a "
        f"client fewer than min_size={min_size} samples in {max_retries} tries (last smallest: "
        f"{smallest}); lower data.min_size, raise data.alpha, or use fewer clients"
    )


def shards(labels: np.ndarray, num_clients: int, shards_per_client: int,
           rng: np.random.Generator) -> list[np.ndarray]:
    """Sort by label, cut into ``num_clients * shards_per_client`` shards, deal them out."""
    n_shards = num_clients * shards_per_client
    if n_shards > len(labels):
        raise PartitionError(f"{n_shards} shards requested for only {len(labels)} samples")
    order = np.lexsort((rng.random(len(labels)), labels))  # by label, random within a label
    pieces = np.array_split(order, n_shards)
    deal = rng.permutation(n_shards).reshape(num_clients, shards_per_client)
    return [np.sort(np.concatenate([pieces[s] for s in row])) for row in deal]


def eval_split(train_labels: np.ndarray, train_parts: list[np.ndarray], test_labels: np.ndarray,
               rng: np.random.Generator) -> list[np.ndarray]:
    """Per-client eval sets with each client's own label mix (the reference's split).

    A client holding share s of class c's training samples gets about s x (test count
    of c) test samples of class c, drawn without replacement; eval sets are disjoint.
    """
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    counts = np.stack([np.bincount(train_labels[p], minlength=num_classes) for p in train_parts])
    totals = np.maximum(counts.sum(axis=0), 1)
    parts: list[list[np.ndarray]] = [[] for _ in train_parts]
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero(test_labels == c))
        # integer cumulative counts: the last cut is exactly len(idx), no sample lost to
        # float rounding of cumulative shares
        cuts = np.cumsum(counts[:, c]) * len(idx) // totals[c]
        start = 0
        for client, end in enumerate(cuts):
            parts[client].append(idx[start:end])
            start = end
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]


Partition = Callable[[np.ndarray, int, "DataConfig", np.random.Generator], list[np.ndarray]]
PARTITIONS: Registry[Partition] = Registry("partition")


@PARTITIONS.register("iid")
def _iid(labels: np.ndarray, n: int, cfg: DataConfig, rng: np.random.Generator) -> list[np.ndarray]:
    return iid(labels, n, rng)


@PARTITIONS.register("dirichlet")
def _dirichlet(labels: np.ndarray, n: int, cfg: DataConfig,
               rng: np.random.Generator) -> list[np.ndarray]:
    return dirichlet(labels, n, cfg.alpha, rng, min_size=cfg.min_size)


@PARTITIONS.register("shards")
def _shards(labels: np.ndarray, n: int, cfg: DataConfig,
            rng: np.random.Generator) -> list[np.ndarray]:
    return shards(labels, n, cfg.shards_per_client, rng)
