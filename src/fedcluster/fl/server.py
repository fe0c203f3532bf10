"""The server step of clustered FL: a function of (run state, the round's updates).

In the shape of fedjax's ``hyp_cluster``: one parameter vector per cluster, a
cluster id per client, a per-cluster weighted mean of the members' local models,
and an empty cluster keeps its parameters. Which cluster a client starts from and
which one its update joins is decided by a clustering method (clustering/); the
model set grows when a method opens a new cluster (a copy of its parent model).

:class:`Server` holds settings only (method, learning rate, clustering points, the
aggregator across processes); :meth:`Server.assign` and :meth:`Server.step` take a
:class:`~fedcluster.fl.state.RunState` and return a new one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..profiling import Profiler
from ..rng import CLUSTER, key_seed
from .aggregate import Aggregator, LocalAggregator, means_from_sums
from .client import Update
from .clustering import ClusterMethod, FedAvg, PointSpace, RoundView
from .clustering.diagnostics import round_diagnostics, within_sse
from .privacy import Privacy
from .robust import Rule, group_targets
from .server_opt import ServerOpt, opened
from .server_opt import apply as optimize
from .state import RunState, start_cluster

__all__ = ["RoundUpdates", "Server", "StepInfo"]

log = logging.getLogger(__name__)

Losses = Callable[[torch.Tensor, Sequence[int]], torch.Tensor]  # (models, clients) -> [c, K]


@dataclass(frozen=True)
class StepInfo:
    """What one aggregation step decided, for the round record."""

    clusters: np.ndarray  # [m] the cluster each sampled client now belongs to
    coords: np.ndarray | None  # [m, 2] 2-D projection of the clustering points, when made
    sse: float | None
    empty: list[int]  # clusters that received no update this round
    diagnostics: dict[str, Any] = field(default_factory=dict)


class RoundUpdates:
    """A round's updates as they arrive; their deltas are copied into one ``[m, D]``
    buffer (the engine's copy can be freed at once), so the server never stacks them."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.updates: list[Update] = []
        self._buffer: torch.Tensor | None = None

    @classmethod
    def of(cls, updates: Sequence[Update]) -> RoundUpdates:
        out = cls(len(updates))
        for u in updates:
            out.add(u)
        return out

    def add(self, update: Update) -> Update:
        """Keep ``update``, its delta now a row of the buffer; returns it."""
        j = len(self.updates)
        if j >= self.expected:
            raise ValueError(f"more than the {self.expected} updates expected this round")
        if self._buffer is None:
            self._buffer = update.delta.new_empty((self.expected, update.delta.numel()))
        self._buffer[j] = update.delta
        update = dataclasses.replace(update, delta=self._buffer[j])
        self.updates.append(update)
        return update

    def __len__(self) -> int:
        return len(self.updates)

    @property
    def clients(self) -> np.ndarray:
        return np.array([u.client for u in self.updates], dtype=np.int64)

    @property
    def deltas(self) -> torch.Tensor:
        assert self._buffer is not None, "no update yet"
        return self._buffer[:len(self.updates)]

    @property
    def owned(self) -> np.ndarray:
        """Which updates this process trained (the ones its aggregator sums)."""
        return np.array([u.owned for u in self.updates], dtype=bool)


@dataclass(frozen=True)
class Server:
    """The server's settings; its state is the :class:`RunState` handed to each call."""

    method: ClusterMethod = field(default_factory=FedAvg)
    lr: float = 1.0
    space: PointSpace = field(default_factory=PointSpace)
    aggregator: Aggregator = field(default_factory=LocalAggregator)
    seed: int = 0
    k_max: int = 8  # the elbow scan of the diagnostics
    n_init: int = 10
    optimizer: ServerOpt = field(default_factory=ServerOpt)  # the rule that moves each model
    rule: Rule | None = None  # a robust rule per cluster (fl/robust.py); None: the mean
    privacy: Privacy | None = None  # DP-FedAvg's clipped, noised mean (fl/privacy.py)

    @property
    def clustering(self) -> bool:
        return not isinstance(self.method, FedAvg)

    def assign(self, state: RunState, round_: int, clients: np.ndarray,
               losses: Losses) -> tuple[RunState, np.ndarray]:
        """Let the method place the sampled clients before training: the new state and
        the cluster each client starts from. ``losses(models, clients)`` gives each
        model's training loss on each client (``[clients, K]``)."""
        chosen, method_state = self.method.assign(
            round_, clients, state.assignment[clients].copy(),
            lambda sub: losses(state.models, sub.tolist()), state.method)
        assignment = state.assignment.copy()
        placed = chosen >= 0
        assignment[clients[placed]] = chosen[placed]
        state = dataclasses.replace(state, assignment=assignment, method=method_state)
        return state, np.array([start_cluster(state, int(c)) for c in clients], dtype=np.int64)

    def step(self, state: RunState, round_: int, updates: RoundUpdates | Sequence[Update],
             previous: np.ndarray | None = None, prof: Profiler | None = None
             ) -> tuple[RunState, StepInfo]:
        """Group the round's updates, aggregate each cluster, and reassign its members.

        ``previous`` is the assignment before this round's :meth:`assign` (default: the
        state's), for the count of clients that changed cluster. The clustering itself is
        charged to ``prof``'s "cluster" section.
        """
        if not isinstance(updates, RoundUpdates):
            updates = RoundUpdates.of(updates)
        section = prof.section if prof is not None else lambda _: contextlib.nullcontext()
        clients, deltas = updates.clients, updates.deltas
        starts = np.array([start_cluster(state, int(c)) for c in clients], dtype=np.int64)
        before = (state.assignment if previous is None else previous)[clients]
        weights = torch.tensor([float(u.num_examples) for u in updates.updates],
                               device=deltas.device)
        models = state.models
        local = models[torch.from_numpy(starts).to(models.device)]  # a new tensor
        local += deltas
        points = coords = None
        with section("cluster"):
            if self.clustering:
                share = torch.from_numpy(np.bincount(starts, minlength=state.k) / len(starts))
                reference = share.to(models) @ models
                points, coords = self.space.points(local, deltas, reference)
            view = RoundView(round_, clients, starts, deltas, local, weights, models,
                             points if points is not None else np.zeros((len(clients), 0)),
                             key_seed(self.seed, CLUSTER, round_), state.method)
            grouping = self.method.group(view)
        for new in sorted(grouping.parents):
            if new != len(models):
                raise RuntimeError(f"cluster {new} opened out of order (have {len(models)})")
            models = torch.cat([models, models[grouping.parents[new]][None]])
        server_opt = opened(state.server_opt, [p for _, p in sorted(grouping.parents.items())])
        labels = self.aggregator.agree(grouping.labels)
        label_t = torch.from_numpy(labels).to(deltas.device)
        owned = updates.owned
        rows = None if owned.all() else torch.from_numpy(np.flatnonzero(owned)).to(deltas.device)
        extra = state.extra
        if self.privacy is not None:  # every process holds every row and draws the same noise
            means, totals, extra = self.privacy.targets(extra, models, local, label_t, round_)
        elif self.rule is None:
            sums, totals = self.aggregator.sums(local, weights, label_t, len(models), rows)
            means = means_from_sums(sums, totals, models.dtype)
        else:  # every process holds every row: the rule needs no all-reduce (fl/robust.py)
            means, totals = group_targets(self.rule, local, label_t, len(models))
        active = np.flatnonzero(totals.cpu().numpy() > 0).tolist()
        new_models, server_opt = optimize(models, means, active, server_opt, self.optimizer,
                                          self.lr, grouping.broadcast)
        if grouping.hold:  # the method gathers updates from these very models
            new_models, server_opt = models, state.server_opt
        old_assignment = state.assignment
        assignment = old_assignment.copy()
        assignment[clients] = labels
        state = dataclasses.replace(
            state, models=new_models, assignment=assignment, server_opt=server_opt, extra=extra,
            method=state.method if grouping.state is None else grouping.state)
        empty = sorted(set(range(state.k)) - {int(c) for c in labels})
        newly = sorted(set(empty) & (_memberless(assignment, state.k)
                                     - _memberless(old_assignment, state.k)))
        if newly and self.clustering and not (grouping.broadcast or grouping.hold):
            log.warning("round %d: cluster(s) %s received no clients and now hold none; "
                        "keeping their models", round_, newly)
        if not self.clustering:
            return state, StepInfo(labels, None, None, empty)
        with section("cluster"):
            diag = round_diagnostics(grouping, points, labels, before, assignment, state.k,
                                     view.seed, self.k_max, self.n_init)
        return state, StepInfo(labels, coords, within_sse(points, labels), empty, diag)


def _memberless(assignment: np.ndarray, k: int) -> set[int]:
    """The clusters no client is assigned to; none before any client is (so the first
    clustering's empty clusters are reported once, and a cluster left empty only once)."""
    held = {int(c) for c in np.unique(assignment) if c >= 0}
    return set(range(k)) - held if held else set()
