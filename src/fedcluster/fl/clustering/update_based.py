"""Clustering the round's client updates (the shared logic of kmeans and hierarchical).

Each clustering round: scan k = 1..k_max (SSE, silhouette), take k (fixed, or the
best silhouette for ``k = "auto"``), group the clients, and match the groups to the
existing cluster models (match.py). ``schedule = "once"`` clusters a single time,
after ``warmup_rounds`` of plain FedAvg, and keeps that assignment; a client first
seen later joins the cluster whose model has the lowest loss on its training data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..aggregate import group_means
from .base import Grouping, LossFn, RoundView
from .diagnostics import best_k, scan_k
from .match import match_clusters

__all__ = ["UpdateClustering"]

LabelFit = Callable[[np.ndarray, int, int], np.ndarray]  # (points, k, seed) -> labels


class UpdateClustering:
    """Groups updates with ``fit``; ``k`` an int or ``"auto"`` (silhouette over 2..k_max).

    ``fit_all``, when given, groups without a k (a distance threshold) and takes
    precedence over ``k``.
    """

    def __init__(self, fit: LabelFit, k: int | str, k_max: int, schedule: str,
                 warmup_rounds: int, metric: str = "euclidean",
                 fit_all: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.fit, self.k, self.k_max, self.schedule = fit, k, k_max, schedule
        self.warmup, self.metric, self.fit_all = warmup_rounds, metric, fit_all
        self.clustered: set[int] = set()  # clients the one-shot clustering has placed

    def assign(self, round_: int, clients: np.ndarray, current: np.ndarray,
               losses: LossFn) -> np.ndarray:
        if self.schedule != "once" or not self.clustered:
            return current
        out = current.copy()
        new = np.array([c not in self.clustered for c in clients], dtype=bool)
        if new.any():
            out[new] = losses(clients[new]).argmin(dim=1).cpu().numpy()
            self.clustered.update(int(c) for c in clients[new])
        return out

    def group(self, view: RoundView) -> Grouping:
        m = len(view.clients)
        if view.round <= self.warmup:
            return Grouping(np.zeros(m, dtype=np.int64), broadcast=True)
        if self.schedule == "once" and self.clustered:
            return Grouping(view.starts.copy())
        sse, sil, labels = scan_k(view.points, lambda p, k: self.fit(p, k, view.seed),
                                  self.k_max, self.metric)
        if self.fit_all is not None:
            raw = self.fit_all(view.points)
        else:
            k = best_k(sil) if self.k == "auto" else min(int(self.k), m)
            raw = labels[k] if k in labels else self.fit(view.points, k, view.seed)
        raw = np.unique(raw, return_inverse=True)[1].astype(np.int64)
        n_groups = int(raw.max()) + 1
        raw_t = torch.from_numpy(raw).to(view.local.device)
        means, _ = group_means(view.local, view.weights, raw_t, n_groups)
        perm = match_clusters(means, view.models)
        out = perm[raw]
        parents = {int(perm[g]): int(np.bincount(view.starts[raw == g]).argmax())
                   for g in range(n_groups) if perm[g] >= len(view.models)}
        self.clustered.update(int(c) for c in view.clients)
        return Grouping(out, parents, clustered=True, sse_per_k=sse, silhouette_per_k=sil,
                        extra={"k_chosen": n_groups})
