"""A run's whole state between rounds: one plain object, saved as a checkpoint.

Everything the next round depends on lives here and nowhere else: the rounds done,
the k cluster models ``[K, D]``, each client's cluster ``[N]`` (-1: not placed yet),
the clustering method's own state (plain data, e.g. which clients a one-shot
clustering has placed, or IFCA's chosen restart), the server optimiser's state per
cluster, the early-stop state, per-client vectors of algorithms that keep them,
and tensors of the round function itself (the pooled baseline's optimiser). Every
random draw is keyed by (seed, round, ...), so this state and the config determine
the rest of a run: a run resumed from it follows the uninterrupted run's path.

The server step and the round are functions of a state that return a new one
(:func:`dataclasses.replace`); nothing is mutated in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["RunState", "members", "new_state", "start_cluster"]


@dataclass(frozen=True)
class RunState:
    round: int  # rounds completed
    models: torch.Tensor  # [K, D] the cluster models
    assignment: np.ndarray  # [N] int64, each client's cluster; -1 while not placed
    method: dict[str, Any] = field(default_factory=dict)  # the clustering method's (JSON)
    stop: dict[str, Any] = field(default_factory=dict)  # early stop's (JSON)
    server_opt: dict[str, torch.Tensor] = field(default_factory=dict)  # per cluster, [K, ...]
    clients: dict[str, torch.Tensor] = field(default_factory=dict)  # per client, [N, ...]
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # the round function's

    @property
    def k(self) -> int:
        return self.models.shape[0]


def new_state(models: torch.Tensor, num_clients: int,
              method: dict[str, Any] | None = None) -> RunState:
    """Round 0: ``models`` (``[K, D]``, or one ``[D]`` model) and nobody placed."""
    models = models.detach().clone()
    return RunState(0, models.unsqueeze(0) if models.dim() == 1 else models,
                    np.full(num_clients, -1, dtype=np.int64), dict(method or {}))


def members(state: RunState, cluster: int) -> np.ndarray:
    return np.flatnonzero(state.assignment == cluster)


def start_cluster(state: RunState, client: int) -> int:
    """The cluster a client trains from: its own, or for a client not placed yet the
    cluster with the most members (cluster 0 while nobody is placed)."""
    c = int(state.assignment[client])
    if c >= 0:
        return c
    placed = state.assignment[state.assignment >= 0]
    return int(np.bincount(placed, minlength=state.k).argmax()) if len(placed) else 0
