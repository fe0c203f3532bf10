"""What every clustering method sees and decides, and the registry of methods.

A method answers three questions. Once, :meth:`init`: which models does the run
start from (k copies of the initial model, one, or k random ones), and what is the
method's own state? Each round before training, :meth:`assign`: which cluster model
does each sampled client start from? (IFCA decides here, by loss.) After training,
:meth:`group`: which cluster does each client's update join? The server does the
rest (growing the model set, aggregating, recording).

A method object holds its settings only; what it must remember between rounds is
plain data (a dict of JSON values) kept in the run state, handed in and returned.
While that state holds ``"epochs"``, the round's clients train that many local epochs
instead of ``client.local_epochs`` (refine's signature rounds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from ...config import ClusterConfig
from ...registry import Registry

__all__ = ["METHODS", "ClusterMethod", "Grouping", "LossFn", "MethodState", "ModelInit",
           "RoundView", "build_method"]

LossFn = Callable[[np.ndarray], torch.Tensor]  # clients -> [len(clients), K] training losses
MethodState = dict[str, Any]  # a method's own state: JSON values only (it is checkpointed)


@dataclass(frozen=True)
class ModelInit:
    """What a method may start from: the run's initial model, and fresh random models."""

    initial: torch.Tensor  # [D]
    fresh: Callable[[int], torch.Tensor]  # seed -> a new randomly initialised model [D]
    seed: int  # the run's seed
    layers: tuple[tuple[int, int, int], ...] = ()  # weight matrices: (offset, rows, columns)
    clients: int = 0  # clients in the federation (0: not known)
    rounds: int = 0  # rounds of the run (0: not known)
    local_epochs: int = 1  # client.local_epochs


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
    state: MethodState = field(default_factory=dict)  # the method's state before the round


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
    hold: bool = False  # no model moves this round (refine's rounds gathering signatures)
    state: MethodState | None = None  # the method's new state (None: unchanged)


class ClusterMethod(Protocol):
    restarts: int  # initial states to try (IFCA's random restarts); 1 for most methods

    def init(self, start: ModelInit, restart: int = 0) -> tuple[torch.Tensor, MethodState]:
        """The starting cluster models ``[K, D]`` and the method's state (``restart``
        numbers the initial states tried, see ``restarts``)."""
        ...

    def assign(self, round_: int, clients: np.ndarray, current: np.ndarray,
               losses: LossFn, state: MethodState) -> tuple[np.ndarray, MethodState]:
        """The cluster each sampled client starts from (-1: the server's default), and
        the method's new state."""
        ...

    def group(self, view: RoundView) -> Grouping:
        """The cluster each client's update joins (``view.state`` the method's state)."""
        ...


MethodFactory = Callable[[ClusterConfig], ClusterMethod]
METHODS: Registry[MethodFactory] = Registry("clustering method")


def build_method(cfg: ClusterConfig) -> ClusterMethod:
    """The method ``cfg.method`` configured by ``cfg`` (plain FedAvg for kmeans and refine
    with k = 1)."""
    from . import cfl, fedavg, hierarchical, ifca, kmeans, refine  # noqa: F401  (registration)

    if cfg.method in ("kmeans", "refine") and cfg.k == 1:
        return METHODS.get("fedavg")(cfg)
    return METHODS.get(cfg.method)(cfg)
