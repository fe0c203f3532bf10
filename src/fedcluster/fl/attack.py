"""Simulated attacks, so that a rule's robustness is measured rather than assumed.

``attack.fraction`` of the clients, chosen once by the seed (:func:`choose_attackers`,
recorded in ``partition.json``), attack in every round they are sampled in:

- ``sign-flip``: send ``-scale * delta`` (the update reversed and boosted);
- ``scale``: send ``scale * delta`` (explicit boosting, as in Bhagoji et al., "Analyzing
  Federated Learning through an Adversarial Lens", ICML 2019);
- ``gaussian``: send ``N(0, scale^2)`` noise instead of an update, drawn from a generator
  keyed by (seed, round, client), the same on every process;
- ``nan``: send NaN everywhere (a broken client);
- ``label-flip``: train honestly on labels ``y -> C - 1 - y`` (:func:`flip_labels`,
  applied to the data before the engine is built).

The update attacks act on the round's gathered updates, before validation; under
several processes every process applies them alike.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import Config, ConfigError
from ..data.federation import Federation
from ..rng import ATTACK, numpy_rng, torch_gen
from .client import Update

__all__ = ["KINDS", "Attack", "attack_of", "choose_attackers", "flip_labels", "flipped"]

KINDS = ("none", "sign-flip", "scale", "gaussian", "nan", "label-flip")


def attacker_count(num_clients: int, fraction: float) -> int:
    return int(round(fraction * num_clients))


def choose_attackers(num_clients: int, fraction: float, seed: int) -> np.ndarray:
    """The sorted ids of the ``round(fraction * num_clients)`` attacking clients."""
    count = attacker_count(num_clients, fraction)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    rng = numpy_rng(seed, ATTACK)
    return np.sort(rng.choice(num_clients, size=count, replace=False)).astype(np.int64)


@dataclass(frozen=True)
class Attack:
    """Which clients attack, and how (``kind`` one of :data:`KINDS`)."""

    kind: str = "none"
    attackers: frozenset[int] = field(default_factory=frozenset)
    scale: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown attack {self.kind!r}; expected one of {KINDS}")

    def among(self, clients: np.ndarray) -> list[int]:
        """The attackers among ``clients``, in their order."""
        if self.kind == "none":
            return []
        return [int(c) for c in clients if int(c) in self.attackers]

    def __call__(self, update: Update, round_: int) -> Update:
        """What the client sends instead of ``update`` (``update`` itself when it is no
        attacker, attacks by its data, or failed)."""
        if (self.kind in ("none", "label-flip") or update.client not in self.attackers
                or update.error is not None):
            return update
        delta = update.delta
        if self.kind == "sign-flip":
            sent = delta * -self.scale
        elif self.kind == "scale":
            sent = delta * self.scale
        elif self.kind == "gaussian":
            gen = torch_gen(self.seed, ATTACK, round_, update.client)
            noise = torch.randn(delta.shape, generator=gen, dtype=delta.dtype)
            sent = (noise * self.scale).to(delta.device)
        else:  # nan
            sent = torch.full_like(delta, float("nan"))
        return dataclasses.replace(update, delta=sent)


def attack_of(cfg: Config) -> Attack:
    """The attack ``cfg`` describes (``[attack]``), its attackers drawn from the seed."""
    a = cfg.attack
    ids = choose_attackers(cfg.data.num_clients, a.fraction, cfg.seed) if a.kind != "none" \
        else np.zeros(0, dtype=np.int64)
    return Attack(a.kind, frozenset(ids.tolist()), a.scale, cfg.seed)


def flipped(federation: Federation, attack: Attack) -> Federation:
    """``federation`` with its attackers' training labels flipped (``label-flip``)."""
    ds = federation.dataset
    y = flip_labels(ds.train_y, federation.train_idx, np.array(sorted(attack.attackers)),
                    ds.num_classes)
    return dataclasses.replace(federation, dataset=dataclasses.replace(ds, train_y=y))


def flip_labels(train_y: torch.Tensor, train_idx: list[np.ndarray], attackers: np.ndarray,
                num_classes: int) -> torch.Tensor:
    """A copy of ``train_y`` whose attackers' samples carry ``C - 1 - y``; a ConfigError
    when an attacker shares training samples with another client."""
    ids = [int(a) for a in attackers if int(a) < len(train_idx)]
    mine = np.concatenate([train_idx[a] for a in ids]) if ids else np.zeros(0, np.int64)
    others = [train_idx[c] for c in range(len(train_idx)) if c not in set(ids)]
    if len(mine) and others and np.intersect1d(mine, np.concatenate(others)).size:
        raise ConfigError("attack.kind = \"label-flip\" needs clients that hold their own "
                         "samples, but attackers share training samples with other clients")
    y = train_y.clone()
    at = torch.from_numpy(mine.astype(np.int64))
    y[at] = num_classes - 1 - y[at]
    return y
