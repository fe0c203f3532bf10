"""Execution engines: who trains the sampled clients, and evaluates models.

The round loop only asks an engine to "train these clients from these start
vectors" and to "evaluate this vector on these clients' eval sets". The
sequential engine does both in this process, one client after another; the
vectorised engine trains many clients at once with ``torch.func.vmap``; later
engines (distributed) implement the same :class:`Engine` protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import torch

from ..fl.client import LocalRule, Update
from ..fl.evaluate import EvalStats
from .sequential import SequentialEngine
from .tuning import choose_engine, choose_threads, make_engine, use_channels_last
from .vmap import VmapEngine

__all__ = ["Engine", "SequentialEngine", "VmapEngine", "choose_engine", "choose_threads",
           "make_engine", "use_channels_last"]


class Engine(Protocol):
    def train(self, round_: int, jobs: Sequence[tuple[int, torch.Tensor]],
              corrections: torch.Tensor | None = None,
              rule: LocalRule | None = None) -> Iterator[Update]:
        """Train each ``(client, start vector)``; yield updates as clients finish, in order.
        ``corrections`` (``[jobs, params]``) are added to each job's every gradient;
        ``rule`` (fl/client.py) changes this call's objective, epochs or frozen parameters."""
        ...

    def evaluate(self, vector: torch.Tensor, clients: Sequence[int]) -> EvalStats:
        """Evaluate ``vector`` on the union of the eval sets of ``clients``."""
        ...

    def evaluate_clients(self, vector: torch.Tensor, clients: Sequence[int]) -> list[EvalStats]:
        """Evaluate ``vector`` on each client's own eval set, one result per client."""
        ...

    def evaluate_own(self, clients: Sequence[int], model_of: Callable[[int], torch.Tensor]
                     ) -> list[EvalStats]:
        """Evaluate each client's own model ``model_of(client)`` on its own eval set, one
        result per client (personalised evaluation). ``model_of`` is called only for the
        clients this process evaluates (under ``--nproc``: those whose state it holds)."""
        ...

    def client_losses(self, vectors: torch.Tensor, clients: Sequence[int]) -> torch.Tensor:
        """Mean loss of each of ``vectors`` ``[K, D]`` on each client's training data:
        ``[len(clients), K]`` (IFCA's cluster choice)."""
        ...
