"""IFCA: the Iterative Federated Clustering Algorithm.

Ghosh, Chung, Yin & Ramchandran, "An Efficient Framework for Clustered Federated
Learning", NeurIPS 2020. The server keeps k models, initialised independently at
random. Each round every sampled client evaluates all k models on its own
training data and joins the one with the lowest loss (:func:`ifca_assign`), trains
it, and the server averages the local models of each cluster (the paper's "model
averaging" variant). A single random initialisation often lets one model win
every client and the clusters merge; the paper therefore uses random restarts,
chosen by training loss (``cluster.restarts``: the loop tries each initial state
for ``cluster.restart_rounds`` rounds, see loop.py).
"""

from __future__ import annotations

import numpy as np
import torch

from ...config import ClusterConfig
from ...rng import INIT, key_seed
from .base import METHODS, Grouping, LossFn, MethodState, ModelInit, RoundView

__all__ = ["IFCA", "ifca_assign"]


def ifca_assign(losses: torch.Tensor) -> np.ndarray:
    """The lowest-loss model of each client, from losses ``[clients, k]`` (first on ties)."""
    return losses.argmin(dim=1).cpu().numpy().astype(np.int64)


class IFCA:
    def __init__(self, cfg: ClusterConfig | None = None) -> None:
        cfg = cfg or ClusterConfig(method="ifca")
        self.k, self.restarts, self.restart_rounds = int(cfg.k), cfg.restarts, cfg.restart_rounds

    def init(self, start: ModelInit, restart: int = 0) -> tuple[torch.Tensor, MethodState]:
        """``k`` independent random initialisations, another set for each restart."""
        seeds = [key_seed(start.seed, INIT, restart, i) for i in range(self.k)]
        return torch.stack([start.fresh(s) for s in seeds]), {"restart": restart}

    def assign(self, round_: int, clients: np.ndarray, current: np.ndarray,
               losses: LossFn, state: MethodState) -> tuple[np.ndarray, MethodState]:
        return ifca_assign(losses(clients)), state

    def group(self, view: RoundView) -> Grouping:
        return Grouping(view.starts.copy(), clustered=True)


METHODS.register("ifca")(IFCA)
