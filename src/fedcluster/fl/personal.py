"""Personalised algorithms: each client ends with a model of its own.

- ``local`` (the lower baseline): every client trains alone from the initial model; its
  whole model lives in the client-state store and the cluster models never move.
- FedPer (Arivazhagan et al., "Federated Learning with Personalization Layers", 2019):
  the layers ``algorithm.head`` names stay with each client (in the store); the rest,
  the body, is averaged as in FedAvg. A client trains its own head and the cluster's
  body together.
- FedRep (Collins et al., "Exploiting Shared Representations for Personalized Federated
  Learning", ICML 2021): as FedPer, but a client first trains its head alone
  (``algorithm.head_epochs``, body frozen), then the body alone (``client.local_epochs``,
  head frozen).
- FedBN (Li et al., "FedBN: Federated Learning on Non-IID Features via Local Batch
  Normalization", ICLR 2021): BatchNorm parameters and running statistics stay local.
- Ditto (Li et al., "Ditto: Fair and Robust Federated Learning Through Personalization",
  ICML 2021, Algorithm 1): the cluster model trains as in FedAvg; each round's client
  also trains its personal model ``v`` (in the store) on ``F(v) + lambda/2 ||v - w||^2``
  with ``w`` the cluster model it started from, ``lambda = algorithm.mu``, for
  ``client.local_epochs`` with the client optimiser.
- ``finetune``: FedAvg (or clustered) training; at evaluation every client trains
  ``algorithm.finetune_epochs`` from its cluster model on its own data, and that model
  is evaluated (nothing is stored).

A client's own entries of a model vector are kept as one flat row of the store; a
client seen for the first time starts from the first initial model's entries. Under
``--nproc`` a process holds (reads, writes, evaluates) only the rows of the clients it
trains; other clients' jobs keep their cluster start (placeholders: the engine trains
each client on its home process only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import Config, ConfigError
from .algorithm import Hooks, Jobs, Start, Trainer
from .client import LocalRule
from .client_state import client_store, here, rows, write
from .flat import FlatModel
from .server import RoundUpdates
from .state import RunState, start_cluster

__all__ = ["Ditto", "Finetune", "LocalParts", "local_entries"]

KEY = "personal"  # the store's key in RunState.clients
PERSONAL_STREAM, FINETUNE_STREAM, HEAD_STREAM = 1, 2, 3  # independent batch orders


def _prefixes_entries(model: FlatModel, prefixes: Sequence[str]) -> torch.Tensor:
    mask = torch.zeros(model.numel, dtype=torch.bool)
    for s in model.slots:
        if any(s.name == p or s.name.startswith(p.rstrip(".") + ".") for p in prefixes):
            mask[s.offset:s.offset + s.numel] = True
    return mask


def local_entries(cfg: Config, model: FlatModel) -> torch.Tensor:
    """``[D]`` bool: the entries of a model vector each client keeps for itself under
    ``cfg.algorithm`` (all for ``local``); a :class:`ConfigError` when the choice names
    nothing, or everything, of this model."""
    a = cfg.algorithm
    if a.name == "local":
        return torch.ones(model.numel, dtype=torch.bool)
    if a.name == "fedbn":
        names = [n for n, m in model.module.named_modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not names:
            raise ConfigError(f"algorithm.name = 'fedbn': model.name = {cfg.model.name!r} has "
                              "no BatchNorm layer to keep local; use a model with BatchNorm")
        return _prefixes_entries(model, names)
    layers = sorted({s.name.rpartition(".")[0] for s in model.slots if not s.is_buffer},
                    key=lambda n: min(s.offset for s in model.slots
                                      if s.name.rpartition(".")[0] == n))
    head = a.head or [layers[-1]]
    mask = _prefixes_entries(model, head)
    for p in head:
        if not _prefixes_entries(model, [p]).any():
            raise ConfigError(f"algorithm.head = {a.head!r}: {p!r} names no parameter of "
                              f"model.name = {cfg.model.name!r}; expected prefixes of its "
                              f"layers {layers}")
    if mask[:model.num_params].all():
        raise ConfigError(f"algorithm.head = {a.head!r} keeps every parameter local; expected "
                          f"a part of the layers {layers}, leaving a body to share")
    return mask


def _own_store(state: RunState, num_clients: int, index: torch.Tensor,
               directory: Path | None, held: np.ndarray | None
               ) -> tuple[RunState, torch.Tensor]:
    """The store of each client's own entries ``index``, made from the first model's."""
    fresh = KEY not in state.clients
    like = state.models[0]
    state, store = client_store(state, KEY, num_clients, len(index), like, directory,
                                held=held)
    if fresh:
        store.copy_(like[index].expand_as(store))
    return state, store


@dataclass(frozen=True)
class LocalParts(Hooks):
    """``local``, FedPer, FedRep and FedBN: the entries ``own`` (``[D]`` bool) of each
    client's model are its own; ``head_epochs`` (FedRep) trains them alone first."""

    own: torch.Tensor
    num_clients: int
    params: int  # the parameters' leading entries of a model vector
    head_epochs: int | None = None
    directory: Path | None = None
    held: np.ndarray | None = None  # the clients whose entries this process holds (None: all)
    personalised = True

    @property
    def index(self) -> torch.Tensor:
        return torch.nonzero(self.own).flatten()

    def _trainable(self, own: bool, like: torch.Tensor) -> torch.Tensor:
        p = like.numel()
        mask = self.own[:p] if own else ~self.own[:p]
        return mask.to(like.device, like.dtype)

    def _with_own(self, store: torch.Tensor, jobs: Iterable[tuple[int, torch.Tensor]]
                  ) -> Iterator[tuple[int, torch.Tensor]]:
        """Each job's start vector with the client's own entries (one new vector at a time;
        a client held by another process keeps its start)."""
        index = self.index.to(store.device)
        for c, start in jobs:
            if here([c], self.held)[0]:
                start = start.clone()
                start[index] = rows(store, [c], self.held)[0].to(start.dtype)
            yield c, start

    def start(self, state: RunState, round_: int, engine: Trainer, jobs: Jobs,
              starts: np.ndarray) -> Start:
        state, store = _own_store(state, self.num_clients, self.index, self.directory,
                                  self.held)
        jobs = list(self._with_own(store, jobs))
        if self.head_epochs is None:
            return Start(state, jobs)
        like = state.models[0, :self.params]
        head = LocalRule(trainable=self._trainable(True, like), epochs=self.head_epochs,
                         stream=HEAD_STREAM)
        moved = []
        for (c, start), u in zip(jobs, engine.train(round_, jobs, None, head), strict=True):
            ok = u.error is None and bool(torch.isfinite(u.delta).all())
            moved.append((c, start + u.delta if ok else start))
        return Start(state, moved, rule=LocalRule(trainable=self._trainable(False, like)))

    def before_step(self, state: RunState, round_: int, engine: Trainer, kept: RoundUpdates,
                    begins: Sequence[torch.Tensor]) -> tuple[RunState, RoundUpdates]:
        """Each accepted client's own entries into the store; zeros in its update there
        (the cluster model's copy of them does not move)."""
        if not len(kept):
            return state, kept
        store = state.clients[KEY]
        index = self.index.to(kept.deltas.device)
        mine = np.flatnonzero(here(kept.clients, self.held))
        if len(mine):
            ends = torch.stack([begins[j][index] for j in mine]) + kept.deltas[mine][:, index]
            write(store, kept.clients[mine], ends, self.held)
        kept.deltas[:, index] = 0
        return state, kept

    def personal(self, state: RunState, round_: int, engine: Trainer,
                 clients: Sequence[int]) -> Callable[[int], torch.Tensor]:
        state, store = _own_store(state, self.num_clients, self.index, self.directory,
                                  self.held)

        def model_of(c: int) -> torch.Tensor:
            return next(self._with_own(store, [(c, state.models[start_cluster(state, c)])]))[1]

        return model_of


@dataclass(frozen=True)
class Ditto(Hooks):
    """Ditto's personal models (``[N, D]`` in the store) and ``lam``, its lambda."""

    num_clients: int
    params: int  # the parameters' leading entries of a model vector
    lam: float
    directory: Path | None = None
    held: np.ndarray | None = None  # the clients whose v this process holds (None: all)
    personalised = True

    def _store(self, state: RunState) -> tuple[RunState, torch.Tensor]:
        index = torch.arange(state.models.shape[1], device=state.models.device)
        return _own_store(state, self.num_clients, index, self.directory, self.held)

    def start(self, state: RunState, round_: int, engine: Trainer, jobs: Jobs,
              starts: np.ndarray) -> Start:
        return Start(self._store(state)[0], jobs)

    def before_step(self, state: RunState, round_: int, engine: Trainer, kept: RoundUpdates,
                    begins: Sequence[torch.Tensor]) -> tuple[RunState, RoundUpdates]:
        """Each accepted client's personal step: from its ``v`` with the gradient of
        ``lambda/2 ||v - w||^2`` = ``lambda (v - v_start)`` (the engine's proximal term) +
        ``lambda (v_start - w)`` (a correction, constant over the steps)."""
        if not len(kept):
            return state, kept
        state, store = self._store(state)
        clients = kept.clients
        w = torch.stack(list(begins)).to(store.dtype)
        mine = here(clients, self.held)
        mine_t = torch.from_numpy(mine).to(w.device)
        v = w.clone()  # a client held by another process: a placeholder it does not train
        v[mine_t] = rows(store, clients[mine], self.held)
        p = self.params
        corrections = self.lam * (v[:, :p] - w[:, :p])
        jobs = [(int(c), v[j]) for j, c in enumerate(clients)]
        rule = LocalRule(mu=self.lam, stream=PERSONAL_STREAM)
        for j, u in enumerate(engine.train(round_, jobs, corrections, rule)):
            if mine[j] and u.error is None and bool(torch.isfinite(u.delta).all()):
                v[j] += u.delta
        write(store, clients[mine], v[mine_t], self.held)
        return state, kept

    def personal(self, state: RunState, round_: int, engine: Trainer,
                 clients: Sequence[int]) -> Callable[[int], torch.Tensor]:
        state, store = self._store(state)
        return lambda c: rows(store, [c], self.held)[0]


@dataclass(frozen=True)
class Finetune(Hooks):
    """FedAvg, then ``epochs`` of local training from the cluster model at evaluation."""

    epochs: int
    personalised = True

    def personal(self, state: RunState, round_: int, engine: Trainer,
                 clients: Sequence[int]) -> Callable[[int], torch.Tensor]:
        jobs = [(c, state.models[start_cluster(state, c)]) for c in clients]
        rule = LocalRule(epochs=self.epochs, stream=FINETUNE_STREAM)
        models = {}
        for (c, start), u in zip(jobs, engine.train(round_, jobs, None, rule), strict=True):
            ok = u.error is None and bool(torch.isfinite(u.delta).all())
            models[c] = start + u.delta if ok else start
        return models.__getitem__
