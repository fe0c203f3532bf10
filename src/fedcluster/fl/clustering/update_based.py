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
from .base import Grouping, LossFn, MethodState, ModelInit, RoundView
from .diagnostics import best_k, scan_k
from .match import match_clusters

__all__ = ["UpdateClustering"]

LabelFit = Callable[[np.ndarray, int, int], np.ndarray]  # (points, k, seed) -> labels


class UpdateClustering:
    """Groups updates with ``fit``; ``k`` an int or ``"auto"`` (silhouette over 2..k_max).

    ``fit_all``, when given, groups without a k (a distance threshold) and takes
    precedence over ``k``. The state: ``{"clustered": [...]}``, the clients the one-shot
    clustering has placed (sorted).
    """

    restarts = 1

    def __init__(self, fit: LabelFit, k: int | str, k_max: int, schedule: str,
                 warmup_rounds: int, metric: str = "euclidean",
                 fit_all: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.fit, self.k, self.k_max, self.schedule = fit, k, k_max, schedule
        self.warmup, self.metric, self.fit_all = warmup_rounds, metric, fit_all

    def init(self, start: ModelInit, restart: int = 0) -> tuple[torch.Tensor, MethodState]:
        """``k`` copies of the initial model (one when k is chosen: clusters open as
        they are found)."""
        copies = 1 if self.k == "auto" else int(self.k)
        return start.initial[None].repeat(copies, 1), {"clustered": []}

    def assign(self, round_: int, clients: np.ndarray, current: np.ndarray,
               losses: LossFn, state: MethodState) -> tuple[np.ndarray, MethodState]:
        clustered = set(state.get("clustered", []))
        if self.schedule != "once" or not clustered:
            return current, state
        out = current.copy()
        new = np.array([c not in clustered for c in clients], dtype=bool)
        if not new.any():
            return out, state
        out[new] = losses(clients[new]).argmin(dim=1).cpu().numpy()
        return out, _placed(state, clients[new])

    def group(self, view: RoundView) -> Grouping:
        m = len(view.clients)
        if view.round <= self.warmup:
            return Grouping(np.zeros(m, dtype=np.int64), broadcast=True)
        if self.schedule == "once" and view.state.get("clustered"):
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
        return Grouping(out, parents, clustered=True, sse_per_k=sse, silhouette_per_k=sil,
                        extra={"k_chosen": n_groups}, state=_placed(view.state, view.clients))


def _placed(state: MethodState, clients: np.ndarray) -> MethodState:
    """``state`` with ``clients`` added to the clients the clustering has placed."""
    clustered = set(state.get("clustered", [])) | {int(c) for c in clients}
    return {**state, "clustered": sorted(clustered)}
