"""FedAvg: one model, no clustering (McMahan et al., "Communication-Efficient Learning
of Deep Networks from Decentralized Data", AISTATS 2017).

Every client trains from the one global model and every update joins it; with the
server learning rate 1 the model becomes the weighted mean of the local models
(fl/aggregate.py). ``cluster.k = 1`` runs this.
"""

from __future__ import annotations

import numpy as np
import torch

from ...config import ClusterConfig
from .base import METHODS, Grouping, LossFn, MethodState, ModelInit, RoundView

__all__ = ["FedAvg"]


class FedAvg:
    """One model, no clustering: every update joins cluster 0."""

    restarts = 1

    def __init__(self, cfg: ClusterConfig | None = None) -> None:
        pass

    def init(self, start: ModelInit, restart: int = 0) -> tuple[torch.Tensor, MethodState]:
        return start.initial[None].clone(), {}

    def assign(self, round_: int, clients: np.ndarray, current: np.ndarray,
               losses: LossFn, state: MethodState) -> tuple[np.ndarray, MethodState]:
        return np.zeros(len(clients), dtype=np.int64), state

    def group(self, view: RoundView) -> Grouping:
        return Grouping(np.zeros(len(view.clients), dtype=np.int64))


METHODS.register("fedavg")(FedAvg)
