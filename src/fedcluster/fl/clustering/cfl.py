"""CFL: clustered federated learning by recursive bi-partitioning.

Sattler, Müller & Samek, "Clustered Federated Learning: Model-Agnostic Distributed
Multi-Task Optimization under Privacy Constraints", IEEE TNNLS 2020 (arXiv 2019).
All clients start in one cluster. When a cluster's FedAvg has come close to a
stationary point (the norm of its mean update is below ``eps1``) while some client
is still far from one of its own (the largest update norm is above ``eps2``), the
cluster is split in two by the cosine similarity of its members' updates
(complete linkage, as in the authors' code). Splits recur, so k is discovered;
``k_max`` caps it.
"""

from __future__ import annotations

import numpy as np
import torch

from ...config import ClusterConfig
from .base import METHODS, Grouping, LossFn, MethodState, ModelInit, RoundView

__all__ = ["CFL", "bipartition", "split_criterion"]


def split_criterion(deltas: torch.Tensor, weights: torch.Tensor, eps1: float,
                    eps2: float) -> tuple[bool, float, float]:
    """``(split?, mean-update norm, max-update norm)`` for one cluster's updates."""
    w = weights.to(deltas.dtype) / weights.sum()
    mean_norm = float((w @ deltas).norm())
    max_norm = float(deltas.norm(dim=1).max())
    return mean_norm < eps1 and max_norm > eps2, mean_norm, max_norm


def bipartition(deltas: torch.Tensor) -> np.ndarray:
    """Two groups (0/1) maximising dissimilarity across, by cosine similarity (complete
    linkage on ``1 - cos``)."""
    unit = torch.nn.functional.normalize(deltas.double(), dim=1)
    dist = (1.0 - unit @ unit.T).clamp_min(0).cpu().numpy()
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(n_clusters=2, metric="precomputed", linkage="complete")
    return model.fit_predict(dist).astype(np.int64)


class CFL:
    restarts = 1

    def __init__(self, cfg: ClusterConfig) -> None:
        self.eps1, self.eps2 = cfg.cfl_eps1, cfg.cfl_eps2
        self.warmup, self.k_max = cfg.resolved_warmup, cfg.k_max

    def init(self, start: ModelInit, restart: int = 0) -> tuple[torch.Tensor, MethodState]:
        """One model: clusters open as splits are found; the tree is the model set's
        growth (each split's parent is in the round records)."""
        return start.initial[None].clone(), {}

    def assign(self, round_: int, clients: np.ndarray, current: np.ndarray,
               losses: LossFn, state: MethodState) -> tuple[np.ndarray, MethodState]:
        return current, state

    def group(self, view: RoundView) -> Grouping:
        labels = view.starts.copy()
        if view.round <= self.warmup:
            return Grouping(labels)
        parents: dict[int, int] = {}
        norms: dict[str, list[float]] = {}
        next_id = len(view.models)
        for c in np.unique(view.starts):
            idx = np.flatnonzero(view.starts == c)
            split, mean_norm, max_norm = split_criterion(view.deltas[idx], view.weights[idx],
                                                         self.eps1, self.eps2)
            norms[str(int(c))] = [mean_norm, max_norm]
            if split and len(idx) > 2 and next_id < self.k_max:
                halves = bipartition(view.deltas[idx])
                labels[idx[halves == 1]] = next_id
                parents[next_id] = int(c)
                next_id += 1
        return Grouping(labels, parents, clustered=True, extra={"cfl_norms": norms})


METHODS.register("cfl")(CFL)
