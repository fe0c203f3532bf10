"""The server's state for clustered FL: K cluster models and each client's cluster.

In the shape of fedjax's ``hyp_cluster``: one parameter vector per cluster, a
cluster id per client, a per-cluster weighted mean of the members' local models,
and an empty cluster keeps its parameters. Which cluster a client starts from and
which one its update joins is decided by a clustering method (clustering/); the
model set grows when a method opens a new cluster (a copy of its parent model).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from ..profiling import Profiler
from ..rng import CLUSTER, key_seed
from .aggregate import group_sums, means_from_sums, server_step
from .client import Update
from .clustering import ClusterMethod, FedAvg, Grouping, PointSpace, RoundView
from .clustering.diagnostics import scan_k, silhouette, within_sse
from .clustering.kmeans import kmeans_labels

__all__ = ["ClusterServer", "Reducer", "StepInfo"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepInfo:
    """What one aggregation step decided, for the round record."""

    clusters: np.ndarray  # [m] the cluster each sampled client now belongs to
    coords: np.ndarray | None  # [m, 2] 2-D projection of the clustering points, when made
    sse: float | None
    empty: list[int]  # clusters that received no update this round
    diagnostics: dict[str, Any] = field(default_factory=dict)


class Reducer(Protocol):
    """Aggregation over several processes (the distributed engine implements it)."""

    def owned(self, clients: np.ndarray) -> np.ndarray:
        """Mask of the ``clients`` whose updates this process sums."""
        ...

    def sum_groups(self, sums: torch.Tensor, totals: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-group sums and weights added up over all processes."""
        ...

    def agree(self, labels: np.ndarray) -> np.ndarray:
        """One process's cluster labels, the same on every process."""
        ...


class ClusterServer:
    """Cluster models ``models[i]`` and the cluster of every client (-1: none yet).

    A client that has never been placed starts from the cluster with the most
    members (cluster 0 while nobody is placed).
    """

    def __init__(self, initial: torch.Tensor, num_clients: int, lr: float,
                 method: ClusterMethod | None = None, space: PointSpace | None = None,
                 k_max: int = 8, n_init: int = 10, seed: int = 0) -> None:
        models = initial.detach().clone()
        self.models = models.unsqueeze(0) if models.dim() == 1 else models
        self.assignment = np.full(num_clients, -1, dtype=np.int64)
        self.lr, self.method = lr, method or FedAvg()
        self.space, self.k_max, self.n_init, self.seed = space or PointSpace(), k_max, n_init, seed
        self.clustering = not isinstance(self.method, FedAvg)
        self._prior: np.ndarray | None = None  # assignment before this round's assign()
        self.profiler = Profiler()  # the run's profiler charges grouping to "cluster"

    @property
    def k(self) -> int:
        return self.models.shape[0]

    def members(self, cluster: int) -> np.ndarray:
        return np.flatnonzero(self.assignment == cluster)

    def start_cluster(self, client: int) -> int:
        c = int(self.assignment[client])
        if c >= 0:
            return c
        placed = self.assignment[self.assignment >= 0]
        return int(np.bincount(placed, minlength=self.k).argmax()) if len(placed) else 0

    def assign(self, round_: int, clients: np.ndarray,
               losses: Callable[[torch.Tensor, Sequence[int]], torch.Tensor]) -> np.ndarray:
        """Let the method place the sampled clients before training; ``losses(vectors,
        clients)`` gives each vector's training loss on each client (``[clients, K]``)."""
        self._prior = self.assignment.copy()
        chosen = self.method.assign(round_, clients, self.assignment[clients].copy(),
                                    lambda sub: losses(self.models, sub.tolist()))
        placed = chosen >= 0
        self.assignment[clients[placed]] = chosen[placed]
        return np.array([self.start_cluster(int(c)) for c in clients], dtype=np.int64)

    def step(self, updates: list[Update], seed: int, round_: int,
             reducer: Reducer | None = None, deltas: torch.Tensor | None = None) -> StepInfo:
        """Group the round's updates, aggregate each cluster, and reassign its members.

        ``deltas`` may hold the updates' deltas already stacked (``[len(updates), D]``,
        row i = ``updates[i].delta``), which saves a copy of them all.

        With a ``reducer`` (several processes) every process groups the same gathered
        updates, sums only those it trained, and the reducer adds the per-cluster sums
        up over processes (one all-reduce).
        """
        clients = np.array([u.client for u in updates])
        starts = np.array([self.start_cluster(int(c)) for c in clients], dtype=np.int64)
        prior = self._prior if self._prior is not None else self.assignment
        previous, self._prior = prior[clients].copy(), None
        if deltas is None:
            deltas = torch.stack([u.delta for u in updates])
        elif deltas.shape[0] != len(updates):
            raise ValueError(f"{deltas.shape[0]} stacked deltas for {len(updates)} updates")
        weights = torch.tensor([float(u.num_examples) for u in updates], device=deltas.device)
        local = self.models[torch.from_numpy(starts).to(self.models.device)]  # a new tensor
        local += deltas
        points = coords = None
        with self.profiler.section("cluster"):
            if self.clustering:
                share = torch.from_numpy(np.bincount(starts, minlength=self.k) / len(starts))
                reference = share.to(self.models) @ self.models
                points, coords = self.space.points(local, deltas, reference)
            view = RoundView(round_, clients, starts, deltas, local, weights, self.models,
                             points if points is not None else np.zeros((len(clients), 0)),
                             key_seed(seed, CLUSTER, round_))
            grouping = self.method.group(view)
        labels = grouping.labels
        for new in sorted(grouping.parents):
            if new != self.k:
                raise RuntimeError(f"cluster {new} opened out of order (have {self.k})")
            self.models = torch.cat([self.models, self.models[grouping.parents[new]][None]])
        if reducer is not None:
            labels = reducer.agree(labels)
        label_t = torch.from_numpy(labels).to(deltas.device)
        if reducer is None:
            sums, totals = group_sums(local, weights, label_t, self.k)
        else:  # sum only the updates trained here; the reducer adds the ranks up
            mine = np.flatnonzero(reducer.owned(clients))
            sums, totals = group_sums(local, weights, label_t, self.k,
                                      rows=torch.from_numpy(mine).to(deltas.device))
            sums, totals = reducer.sum_groups(sums, totals)
        means = means_from_sums(sums, totals, self.models.dtype)
        new_models = self.models.clone()
        for j in np.flatnonzero(totals.cpu().numpy() > 0):
            new_models[j] = server_step(self.models[j], means[j], self.lr)
        if grouping.broadcast:
            new_models[1:] = new_models[0]
        self.models = new_models
        self.assignment[clients] = labels
        empty = sorted(set(range(self.k)) - {int(c) for c in labels})
        if empty and self.clustering:
            log.warning("round %d: cluster(s) %s received no clients; keeping their models",
                        round_, empty)
        if not self.clustering:
            return StepInfo(labels, None, None, empty)
        with self.profiler.section("cluster"):
            diag = self._diagnostics(grouping, points, labels, previous, view.seed)
        return StepInfo(labels, coords, within_sse(points, labels), empty, diag)

    def _diagnostics(self, grouping: Grouping, points: np.ndarray, labels: np.ndarray,
                     previous: np.ndarray, seed: int) -> dict[str, Any]:
        sse, sil = grouping.sse_per_k, grouping.silhouette_per_k
        if grouping.clustered and sse is None:  # the elbow curve, for any method
            sse, sil, _ = scan_k(points, lambda p, k: kmeans_labels(p, k, seed, self.n_init),
                                 self.k_max)
        placed = self.assignment[self.assignment >= 0]
        return {
            "clustered": grouping.clustered,
            "cluster_sizes": np.bincount(placed, minlength=self.k).tolist(),
            "silhouette": silhouette(points, labels),
            "changed": int(((previous >= 0) & (previous != labels)).sum()),
            "sse_per_k": sse,
            "silhouette_per_k": sil,
            **grouping.extra,
        }
