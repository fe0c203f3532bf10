"""SCAFFOLD's control variates, per client and per cluster.

Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging for Federated Learning",
ICML 2020 (Algorithm 1, option II). Client ``i`` keeps a control variate ``c_i`` (in the
client-state store, fl/client_state.py) and each cluster model ``k`` one ``c_k`` (in
``RunState.server_opt``, so a cluster opened mid-run copies its parent's, as the server
optimisers' state does). A client that starts from cluster ``k`` takes its local SGD
steps on the corrected gradient ``g(y) - c_i + c_k`` (fl/client.py); after its ``K``
steps of learning rate ``lr`` it reports ``delta = y - x`` and

- ``c_i <- c_i - c_k - delta / (K * lr)``   (a client that took no step keeps ``c_i``);
- ``c_k <- c_k + sum(n_i (c_i_new - c_i)) / n_k`` over the round's accepted clients that
  started from ``k``, ``n_i`` being client ``i``'s training-set size and ``n_k`` the sum
  of those of the clients that start from ``k`` after the round (its members, and for the
  cluster unplaced clients start from, those too, whose ``c_i`` are still 0): ``c_k``
  stays the mean of those clients' ``c_i`` weighted as the models are averaged (by
  training-set size), so the corrections
  ``c_k - c_i`` cancel in the cluster's weighted mean update when every client takes the
  same number of steps. (The paper weights clients equally, as it averages the models
  equally; with size-weighted models an equal-weighted ``c`` leaves ``c - sum w_i c_i``
  in every update.) Clients whose step counts differ a lot still get corrections that
  do not cancel: see the README for a federation where SCAFFOLD diverges at a learning
  rate FedAvg trains with.

The models move as in FedAvg (``server.optimizer``, ``server.lr`` = the paper's global
step). Only parameters have control variates (``P`` leading entries of a model vector).
The change ``c_i_new - c_i = -c_k - delta / (K * lr)`` does not depend on ``c_i``, so every
process of a multi-process run steps ``c_k`` alike from the gathered updates while each
holds (reads, writes) only the ``c_i`` of the clients it trains (fl/client_state.py).

Checked against the paper: ``K`` is each client's own count of local steps
(``Update.steps``), ``lr`` the local rate ``client.lr`` (constant over the run), the
correction ``c_k - c_i`` is added to the gradient, and with equal training-set sizes the
server's ``c_k`` moves by ``(1 / N_k) * sum (c_i_new - c_i)`` = the paper's
``|S| / N * mean``, ``N_k`` counting the clients that start from ``k`` (with one cluster:
all ``N``, as in the paper, placed or not). SCAFFOLD is defined for plain SGD,
so momentum and Adam are refused (config); weight decay is allowed: it is part of every
client's objective, and the control variates then estimate the regularised gradients
(the decay term, the same for every client, cancels in ``c_k - c_i``). With several
clusters, a client that changes cluster (or an unplaced one placed elsewhere than the
cluster it started from) takes its ``c_i`` along without moving the clusters' ``c_k``:
they are then no longer exactly their members' mean.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .algorithm import Hooks, Jobs, Start, Trainer
from .client_state import client_store, here, rows, write
from .server import RoundUpdates
from .state import RunState, start_cluster

__all__ = ["KEY", "Scaffold"]

KEY = "scaffold.c"  # the store's key in RunState.clients and the clusters' in server_opt


@dataclass(frozen=True)
class Scaffold(Hooks):
    """SCAFFOLD's state updates for a federation of clients of training-set ``sizes`` and
    models whose first ``params`` entries are parameters, trained by local SGD at
    learning rate ``lr``."""

    sizes: np.ndarray  # [N] each client's training-set size (the aggregation weights)
    params: int
    lr: float
    directory: Path | None = None  # where a memory-mapped store's file is made
    held: np.ndarray | None = None  # the clients whose c_i this process holds (None: all)

    def prepare(self, state: RunState) -> RunState:
        """``state`` with the client store and the cluster control variates (zeros when new)."""
        like = state.models[0, :self.params]
        state, _ = client_store(state, KEY, len(self.sizes), self.params, like, self.directory,
                                held=self.held)
        if KEY not in state.server_opt:
            zeros = torch.zeros(state.k, self.params, dtype=like.dtype, device=like.device)
            state = dataclasses.replace(state, server_opt={**state.server_opt, KEY: zeros})
        return state

    def corrections(self, state: RunState, clients: np.ndarray, starts: np.ndarray
                    ) -> tuple[RunState, torch.Tensor]:
        """The prepared state and each client's gradient correction ``c_k - c_i`` ``[m, P]``
        (``c_k`` alone for a client held by another process, which trains it)."""
        state = self.prepare(state)
        c = state.server_opt[KEY]
        mine = here(clients, self.held)
        own = torch.zeros(len(clients), self.params, dtype=c.dtype, device=c.device)
        own[torch.from_numpy(mine).to(c.device)] = rows(state.clients[KEY], clients[mine],
                                                        self.held)
        return state, c[torch.as_tensor(starts, device=c.device)] - own

    @staticmethod
    def _starts(state: RunState) -> np.ndarray:
        """Every client's start cluster: its own, or for the unplaced the one they start
        from (fl/state.py: start_cluster)."""
        out = state.assignment.copy()
        unplaced = np.flatnonzero(out < 0)
        if len(unplaced):
            out[unplaced] = start_cluster(state, int(unplaced[0]))
        return out

    def update(self, state: RunState, updates: RoundUpdates, starts: np.ndarray) -> RunState:
        """The state after the round's accepted ``updates`` (their start clusters ``starts``):
        new client control variates (written into the store in place) and cluster ones."""
        clients = updates.clients
        if not len(clients):
            return state
        store, c = state.clients[KEY], state.server_opt[KEY]
        starts_t = torch.as_tensor(starts, device=c.device)
        steps = torch.tensor([float(u.steps) for u in updates.updates], dtype=c.dtype,
                             device=c.device)
        deltas = updates.deltas[:, :self.params].to(c.dtype)
        step = -c[starts_t] - deltas / (steps.clamp_min(1) * self.lr)[:, None]
        step[steps == 0] = 0  # c_i_new - c_i
        mass = np.bincount(self._starts(state), weights=self.sizes, minlength=state.k)
        n_k = torch.as_tensor(np.maximum(mass, 1.0), dtype=c.dtype, device=c.device)
        n_i = torch.as_tensor(self.sizes[clients], dtype=c.dtype, device=c.device)
        change = torch.zeros_like(c).index_add_(0, starts_t, step * n_i[:, None])
        mine = here(clients, self.held)
        ids = clients[mine]
        write(store, ids, rows(store, ids, self.held) + step[torch.from_numpy(mine)
                                                             .to(c.device)], self.held)
        return dataclasses.replace(state, server_opt={**state.server_opt,
                                                      KEY: c + change / n_k[:, None]})

    def start(self, state: RunState, round_: int, engine: Trainer, jobs: Jobs,
              starts: np.ndarray) -> Start:
        clients = np.array([c for c, _ in jobs], dtype=np.int64)
        state, corrections = self.corrections(state, clients, starts)
        return Start(state, jobs, corrections)

    def after_step(self, state: RunState, kept: RoundUpdates, starts: np.ndarray,
                   labels: np.ndarray) -> RunState:
        return self.update(state, kept, starts)
