"""What every clustering method sees and decides, and the registry of methods.

A method answers two questions each round. Before training, :meth:`assign`: which
cluster model does each sampled client start from? (IFCA decides here, by loss.)
After training, :meth:`group`: which cluster does each client's update join? The
server does the rest (growing the model set, aggregating, recording).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from ...config import ClusterConfig
from ...registry import Registry

__all__ = ["METHODS", "ClusterMethod", "Grouping", "LossFn", "RoundView", "build_method"]

LossFn = Callable[[np.ndarray], torch.Tensor]  # clients -> [len(clients), K] training losses


@dataclass(frozen=True)
class RoundView:
    """One round's updates, as a method sees them (``m`` clients, ``K`` models)."""

    round: int
    clients: np.ndarray  # [m] client ids
    starts: np.ndarray  # [m] the cluster each client trained from
    deltas: torch.Tensor  # [m, D] local - start
    local: torch.Tensor  # [m, D] the local models
    weights: torch.Tensor  # [m] aggregation weights (training-set sizes)
    models: torch.Tensor  # [K, D] the cluster models the round started with
    points: np.ndarray  # [m, p] the clustering points (see features.py)
    seed: int  # keyed seed for this round's clustering


@dataclass(frozen=True)
class Grouping:
    """A method's decision: ``labels[j]`` is client j's cluster; an id >= K is a new
    cluster whose model starts as a copy of ``parents[id]``."""

    labels: np.ndarray
    parents: dict[int, int] = field(default_factory=dict)
    clustered: bool = False  # whether the method (re)clustered this round
    sse_per_k: dict[int, float] | None = None
    silhouette_per_k: dict[int, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # method-specific diagnostics
    broadcast: bool = False  # warm-up FedAvg: every model takes cluster 0's new value


class ClusterMethod(Protocol):
    def assign(self, round_: int, clients: np.ndarray, current: np.ndarray,
               losses: LossFn) -> np.ndarray:
        """The cluster each sampled client starts from (-1: the server's default)."""
        ...

    def group(self, view: RoundView) -> Grouping:
        """The cluster each client's update joins."""
        ...


MethodFactory = Callable[[ClusterConfig], ClusterMethod]
METHODS: Registry[MethodFactory] = Registry("clustering method")


def build_method(cfg: ClusterConfig) -> ClusterMethod:
    """The method ``cfg.method`` configured by ``cfg`` (plain FedAvg for kmeans with k = 1)."""
    if cfg.method == "kmeans" and cfg.k == 1:
        return METHODS.get("fedavg")(cfg)
    return METHODS.get(cfg.method)(cfg)


class FedAvg:
    """One model, no clustering: every update joins cluster 0."""

    def __init__(self, cfg: ClusterConfig | None = None) -> None:
        pass

    def assign(self, round_: int, clients: np.ndarray, current: np.ndarray,
               losses: LossFn) -> np.ndarray:
        return np.zeros(len(clients), dtype=np.int64)

    def group(self, view: RoundView) -> Grouping:
        return Grouping(np.zeros(len(view.clients), dtype=np.int64))


METHODS.register("fedavg")(FedAvg)
