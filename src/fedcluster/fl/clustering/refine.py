"""Cluster the updates once from a shared model, then let every client re-choose by loss.

Two published rules, each used where it is reliable. Updates from one shared model are
comparable across clients, so the k cluster models are created by clustering them once
(KMeans, as in the one-shot FL+HC of Briggs, Fan & Andras, IJCNN 2020), after
``warmup_rounds`` of FedAvg. From then on clients start from different models and the
distance between their weights says mostly which model they started from (so a
re-clustering finds the current partition again and never repairs an early mistake);
instead, each round every sampled client evaluates every cluster model on its own
training data and trains the one with the lowest loss: the assignment rule of IFCA
(Ghosh, Chung, Yin & Ramchandran, NeurIPS 2020), here started from models that the
clustering has already pulled apart, which is what IFCA's random initialisations lack.
A client placed wrongly by the clustering moves as soon as its own group's model fits
it better; a client first sampled late joins the model that fits it best.

With ``k = "auto"`` the clustering round takes the k with the best silhouette
(diagnostics.py). The state is ``{"clustered": [...]}``: the clients placed so far.
"""

from __future__ import annotations

import numpy as np
import torch

from ...config import ClusterConfig
from .base import METHODS, Grouping, LossFn, MethodState, ModelInit, RoundView
from .kmeans import kmeans_labels
from .update_based import UpdateClustering

__all__ = ["Refine"]


class Refine:
    """One-shot KMeans of the updates from a shared model, then IFCA's loss rule."""

    restarts = 1

    def __init__(self, cfg: ClusterConfig) -> None:
        def fit(points: np.ndarray, k: int, seed: int) -> np.ndarray:
            return kmeans_labels(points, k, seed, cfg.n_init)

        self.once = UpdateClustering(fit, cfg.k, cfg.k_max, "once", cfg.warmup_rounds)

    def init(self, start: ModelInit, restart: int = 0) -> tuple[torch.Tensor, MethodState]:
        """``k`` copies of the initial model (one with ``k = "auto"``)."""
        return self.once.init(start, restart)

    def assign(self, round_: int, clients: np.ndarray, current: np.ndarray,
               losses: LossFn, state: MethodState) -> tuple[np.ndarray, MethodState]:
        """Before the clustering: the shared model; after it, each sampled client's
        lowest-loss model (the first on ties)."""
        if not state.get("clustered"):
            return current, state
        chosen = losses(clients).argmin(dim=1).cpu().numpy().astype(np.int64)
        seen = set(state["clustered"]) | {int(c) for c in clients}
        return chosen, {**state, "clustered": sorted(seen)}

    def group(self, view: RoundView) -> Grouping:
        """Warm-up: FedAvg; the first round after it: KMeans of the updates (all from one
        model); later: each update joins the model it trained from."""
        return self.once.group(view)


METHODS.register("refine")(Refine)
