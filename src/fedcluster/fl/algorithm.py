"""The client algorithm's hooks into the federated round (loop.py).

FedAvg and FedProx need none: the engine's objective (``algorithm.prox_mu``) is all
there is to them. The others keep state per client (fl/client_state.py) or per cluster,
and the round calls them at four points:

1. :meth:`Hooks.start`, before training: the jobs' start vectors (a personal model or
   a cluster model with the client's own layers), gradient corrections, a training rule;
2. :meth:`Hooks.before_step`, with the accepted updates: personal training and the
   entries of each update that stay with the client (zeroed before aggregation);
3. :meth:`Hooks.after_step`, with the new cluster models: state updates (SCAFFOLD's and
   FedDyn's);
4. :meth:`Hooks.personal`, at evaluation: each client's own model, for personalised
   evaluation (fl/personal.py).

Every process of a multi-process run calls the hooks alike, with the all-gathered
updates, so the per-cluster state agrees on every rank. A client's own state lives only
on its home process (the one that trains and evaluates it: fl/client_state.py), so a hook
reads and writes the rows of the clients ``held`` here and hands placeholders (the
cluster start, zero corrections) for the others, which this process's engine skips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from .client import LocalRule, Update
from .server import RoundUpdates
from .state import RunState

__all__ = ["Hooks", "Jobs", "Start", "Trainer"]

Jobs = list[tuple[int, torch.Tensor]]  # (client, start vector)


class Trainer(Protocol):
    """What the hooks use of an engine (engines.Engine): training, e.g. personal models."""

    def train(self, round_: int, jobs: Sequence[tuple[int, torch.Tensor]],
              corrections: torch.Tensor | None = None,
              rule: LocalRule | None = None) -> Iterator[Update]: ...


@dataclass(frozen=True)
class Start:
    """How the round's clients train: their jobs, corrections and rule."""

    state: RunState
    jobs: Jobs
    corrections: torch.Tensor | None = None  # [jobs, params], added to every gradient
    rule: LocalRule | None = None


class Hooks:
    """FedAvg's hooks: nothing changes. Algorithms override what they need."""

    personalised = False  # clients end with models of their own (evaluated per client)

    def start(self, state: RunState, round_: int, engine: Trainer, jobs: Jobs,
              starts: np.ndarray) -> Start:
        """Before training: ``jobs`` start from their cluster models ``starts``."""
        return Start(state, jobs)

    def before_step(self, state: RunState, round_: int, engine: Trainer, kept: RoundUpdates,
                    begins: Sequence[torch.Tensor]) -> tuple[RunState, RoundUpdates]:
        """With the accepted updates (``begins``: the vectors each started from), before
        the server step; may change the updates in place or return others."""
        return state, kept

    def after_step(self, state: RunState, kept: RoundUpdates, starts: np.ndarray,
                   labels: np.ndarray) -> RunState:
        """After the server step: ``kept`` started from clusters ``starts`` and joined
        clusters ``labels``."""
        return state

    def personal(self, state: RunState, round_: int, engine: Trainer,
                 clients: Sequence[int]) -> Callable[[int], torch.Tensor]:
        """Each of ``clients``' own model, by client (personalised algorithms only; called
        for the clients held here)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no personal models")
