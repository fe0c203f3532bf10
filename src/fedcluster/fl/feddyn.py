"""FedDyn: federated learning with dynamic regularisation.

Acar et al., "Federated Learning Based on Dynamic Regularization", ICLR 2021
(Algorithm 1). Client ``i`` keeps ``g_i`` (the gradient of its loss at its last local
model, zeros at first; in the client-state store, fl/client_state.py) and each cluster
model ``k`` a server state ``h_k`` (in ``RunState.server_opt``, zeros at first). From
the cluster model ``theta`` a client minimises

    L_i(w) - <g_i, w> + alpha/2 ||w - theta||^2

(the engine's proximal term at ``alpha``, ``algorithm.prox_mu``, and the correction
``-g_i`` added to every gradient), reaches ``theta_i`` and sets

- ``g_i <- g_i - alpha (theta_i - theta)``;

the server, over the round's accepted clients ``P_k`` that joined cluster ``k`` and
the cluster's ``m_k`` members (the paper's ``m`` clients, per cluster), sets

- ``h_k <- h_k - alpha / m_k * sum_{i in P_k} (theta_i - theta)``,
- ``theta_k <- mean_{i in P_k} theta_i - h_k / alpha``,

the mean unweighted, as in the paper (the round hands the server unit weights). Only
parameters carry ``g`` and ``h`` (the ``P`` leading entries of a model vector); a
cluster without accepted clients keeps its model and ``h_k``. The server step itself
must be the plain mean (``server.optimizer = "fedavg"``, ``server.lr = 1``: config.py).
Under ``--nproc`` a process holds the ``g_i`` of the clients it trains only; ``h_k``
comes from the gathered updates, alike on every process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .algorithm import Hooks, Jobs, Start, Trainer
from .client_state import client_store, here, rows, write
from .server import RoundUpdates
from .state import RunState

__all__ = ["KEY", "FedDyn", "client_gradient", "server_model", "server_state"]

KEY = "feddyn"  # the client store's key in RunState.clients and the clusters' h in server_opt


def client_gradient(g: torch.Tensor, delta: torch.Tensor, alpha: float) -> torch.Tensor:
    """``g_i - alpha (theta_i - theta)`` (``delta = theta_i - theta``; rows or one vector)."""
    return g - alpha * delta


def server_state(h: torch.Tensor, delta_sum: torch.Tensor, members: torch.Tensor,
                 alpha: float) -> torch.Tensor:
    """``h_k - alpha / m_k * sum_i (theta_i - theta)`` per cluster (``[K, P]``, ``[K]``)."""
    return h - alpha * delta_sum / members[:, None]


def server_model(mean: torch.Tensor, h: torch.Tensor, alpha: float) -> torch.Tensor:
    """``mean_i theta_i - h_k / alpha``."""
    return mean - h / alpha


@dataclass(frozen=True)
class FedDyn(Hooks):
    """FedDyn's state for ``num_clients`` clients and models whose first ``params`` entries
    are parameters."""

    num_clients: int
    params: int
    alpha: float
    directory: Path | None = None  # where a memory-mapped store's file is made
    held: np.ndarray | None = None  # the clients whose g_i this process holds (None: all)

    def prepare(self, state: RunState) -> RunState:
        """``state`` with the client store and the clusters' ``h`` (zeros when new)."""
        like = state.models[0, :self.params]
        state, _ = client_store(state, KEY, self.num_clients, self.params, like,
                                self.directory, held=self.held)
        if KEY not in state.server_opt:
            zeros = torch.zeros(state.k, self.params, dtype=like.dtype, device=like.device)
            state = dataclasses.replace(state, server_opt={**state.server_opt, KEY: zeros})
        return state

    def start(self, state: RunState, round_: int, engine: Trainer, jobs: Jobs,
              starts: np.ndarray) -> Start:
        state = self.prepare(state)
        clients = np.array([c for c, _ in jobs], dtype=np.int64)
        store, mine = state.clients[KEY], here(clients, self.held)
        g = torch.zeros(len(clients), self.params, dtype=store.dtype, device=store.device)
        g[torch.from_numpy(mine).to(g.device)] = rows(store, clients[mine], self.held)
        return Start(state, jobs, -g)  # zeros for clients trained by another process

    def before_step(self, state: RunState, round_: int, engine: Trainer, kept: RoundUpdates,
                    begins: Sequence[torch.Tensor]) -> tuple[RunState, RoundUpdates]:
        """The paper's unweighted mean: every accepted client weighs 1."""
        return state, RoundUpdates.of([dataclasses.replace(u, num_examples=1)
                                       for u in kept.updates])

    def after_step(self, state: RunState, kept: RoundUpdates, starts: np.ndarray,
                   labels: np.ndarray) -> RunState:
        clients = kept.clients
        if not len(clients):
            return state
        store, h = state.clients[KEY], state.server_opt[KEY]
        deltas = kept.deltas[:, :self.params].to(h.dtype)
        mine = here(clients, self.held)
        ids = clients[mine]
        write(store, ids, client_gradient(rows(store, ids, self.held),
                                          deltas[torch.from_numpy(mine).to(h.device)],
                                          self.alpha), self.held)
        label_t = torch.as_tensor(labels, device=h.device)
        delta_sum = torch.zeros_like(h).index_add_(0, label_t, deltas)
        m = np.bincount(state.assignment[state.assignment >= 0], minlength=state.k)
        m_t = torch.as_tensor(np.maximum(m, 1), dtype=h.dtype, device=h.device)
        h_new = server_state(h, delta_sum, m_t, self.alpha)
        active = torch.as_tensor(np.unique(labels), device=h.device)
        models = state.models.clone()
        models[active, :self.params] = server_model(models[active, :self.params],
                                                    h_new[active], self.alpha)
        return dataclasses.replace(state, models=models,  # an idle cluster's h stays
                                   server_opt={**state.server_opt, KEY: h_new})
