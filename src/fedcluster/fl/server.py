"""The server's state for clustered FL: k global models and each client's cluster.

In the shape of fedjax's ``hyp_cluster``: one parameter vector per cluster, a
cluster id per client, a per-cluster weighted mean of the members' local models,
and an empty cluster keeps its parameters. ``k = 1`` is plain FedAvg.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ..rng import CLUSTER, key_seed
from .aggregate import group_means, server_step
from .client import Update
from .cluster import kmeans_cluster, match_clusters

__all__ = ["ClusterServer", "StepInfo"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepInfo:
    """What one aggregation step decided, for the round record."""

    clusters: np.ndarray  # [m] the cluster each sampled client now belongs to
    coords: np.ndarray | None  # [m, 2] 2-D projection of the updates, when made
    sse: float | None
    empty: list[int]  # clusters that received no update this round


class ClusterServer:
    """k global models (``models[i]`` is cluster i) and the cluster of every client.

    A client that has never been sampled has cluster -1 (with k = 1, every client is
    in cluster 0 from the start) and starts from the cluster with the most members.
    """

    def __init__(self, initial: torch.Tensor, k: int, num_clients: int, lr: float,
                 reduce: str = "pca2", n_init: int = 10) -> None:
        self.models = initial.detach().clone().unsqueeze(0).repeat(k, 1)
        self.assignment = np.full(num_clients, 0 if k == 1 else -1, dtype=np.int64)
        self.k, self.lr, self.reduce, self.n_init = k, lr, reduce, n_init

    def members(self, cluster: int) -> np.ndarray:
        return np.flatnonzero(self.assignment == cluster)

    def start_cluster(self, client: int) -> int:
        c = int(self.assignment[client])
        if c >= 0:
            return c
        return int(np.bincount(self.assignment[self.assignment >= 0], minlength=self.k).argmax())

    def step(self, updates: list[Update], seed: int, round_: int) -> StepInfo:
        """Cluster the round's updates, aggregate each cluster, and reassign its members."""
        clients = np.array([u.client for u in updates])
        starts = torch.as_tensor([self.start_cluster(c) for c in clients])
        deltas = torch.stack([u.delta for u in updates])
        weights = torch.tensor([float(u.num_examples) for u in updates], device=deltas.device)
        coords, sse = None, None
        if self.k == 1:
            labels = np.zeros(len(updates), dtype=np.int64)
        else:
            found = kmeans_cluster(deltas, self.k, key_seed(seed, CLUSTER, round_),
                                   self.reduce, self.n_init)
            labels, coords, sse = found.labels, found.coords, found.sse
        local = self.models[starts.to(self.models.device)] + deltas
        label_t = torch.from_numpy(labels).to(deltas.device)
        means, totals = group_means(local, weights, label_t, self.k)
        present = np.bincount(labels, minlength=self.k) > 0
        perm = match_clusters(means, present, self.models) if self.k > 1 else np.zeros(1, int)
        new = self.models.clone()
        for j in np.flatnonzero(present & (totals.cpu().numpy() > 0)):
            new[perm[j]] = server_step(self.models[perm[j]], means[j], self.lr)
        self.models = new
        clusters = perm[labels]
        self.assignment[clients] = clusters
        empty = sorted(set(range(self.k)) - {int(c) for c in clusters})
        if empty:
            log.warning("round %d: cluster(s) %s received no clients; keeping their models",
                        round_, empty)
        return StepInfo(clusters, coords, sse, empty)
