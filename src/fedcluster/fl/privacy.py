"""Differential privacy: DP-FedAvg with central Gaussian noise on each cluster's aggregate.

- McMahan, Ramage, Talwar, Zhang, "Learning Differentially Private Recurrent Language
  Models", ICLR 2018 (DP-FedAvg): each client's update is clipped to an L2 norm of at
  most ``C``, the clipped updates are summed with equal weight, and Gaussian noise of std
  ``z * C`` is added to the sum before it is divided by the number of clients.
- Andrew, Thakkar, McMahan, Ramaswamy, "Differentially Private Learning with Adaptive
  Clipping", NeurIPS 2021: with ``adaptive``, ``C`` follows the ``target_quantile`` of the
  update norms, ``C <- C * exp(-clip_lr * (b - target_quantile))`` where ``b`` is the
  noised fraction of updates that were not clipped; the update noise is raised to
  ``z_update = (z^-2 - (2 * count_noise)^-2)^-1/2`` so that both releases together cost
  what one Gaussian mechanism of multiplier ``z`` costs.

With k clusters, a client's update joins exactly one cluster's sum each round, and every
cluster's sum gets its own noise of the same std: the round is a Gaussian mechanism of
multiplier ``z`` for every client (parallel composition), accounted as one step. The
privacy loss is from Google's ``dp-accounting`` (RDP accountant, Poisson subsampling at
``q = clients per round / clients``), never computed here. What the run state keeps:
the steps taken (rounds that released models) and the clip norm, in ``RunState.extra``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch

from ..rng import PRIVACY, torch_gen
from .aggregate import group_sums

__all__ = ["Privacy", "clip_rows", "describe", "epsilon", "next_clip", "noisy_targets",
           "update_noise"]

STEPS, CLIP = "privacy_steps", "privacy_clip"  # the run state's extra tensors


def clip_rows(x: torch.Tensor, bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(clipped, unclipped)``: each row of ``x`` ``[m, D]`` scaled to an L2 norm of at
    most ``bound`` (a new tensor), and which rows already had a norm ``<= bound``."""
    norms = torch.linalg.vector_norm(x.to(torch.float64), dim=1)
    factor = (bound / norms.clamp_min(torch.finfo(torch.float64).tiny)).clamp(max=1.0)
    return (x.to(torch.float64) * factor[:, None]).to(x.dtype), norms <= bound


def update_noise(z: float, count_noise: float | None) -> float:
    """The multiplier of the update's noise: ``z`` with a fixed clip; with adaptive
    clipping (``count_noise`` the std of the unclipped count's noise) the larger
    ``(z^-2 - (2 count_noise)^-2)^-1/2`` that leaves the pair of releases at ``z``."""
    if count_noise is None or z == 0:
        return z
    if z >= 2 * count_noise:
        raise ValueError(f"adaptive clipping needs noise_multiplier < 2 * count_noise, got "
                         f"{z} and {count_noise}")
    return (z ** -2 - (2 * count_noise) ** -2) ** -0.5


def noisy_targets(models: torch.Tensor, local: torch.Tensor, labels: torch.Tensor,
                  clip: float, std: float, gen: torch.Generator | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DP-FedAvg per cluster: ``(targets [K, D], counts [K], unclipped [m])``.

    Client ``i`` in cluster ``g = labels[i]`` contributes ``d_i = clip(local_i - models[g],
    clip)`` with weight 1; ``targets[g] = models[g] + (sum d_i + std * xi_g) / counts[g]``
    with ``xi_g ~ N(0, I)`` drawn from ``gen`` (on the CPU, in cluster order) for each
    cluster with members; a cluster without members keeps its model (count 0).
    """
    k = models.shape[0]
    clipped, unclipped = clip_rows(local - models[labels], clip)
    sums, counts = group_sums(clipped, torch.ones(len(labels), device=local.device), labels, k)
    for g in torch.nonzero(counts > 0).flatten().tolist():
        if std > 0:
            xi = torch.randn(models.shape[1], generator=gen, dtype=torch.float64)
            sums[g] += std * xi.to(sums.device)
    targets = models.to(torch.float64) + sums / counts.clamp_min(1.0)[:, None]
    return targets.to(models.dtype), counts, unclipped


def next_clip(clip: float, unclipped: int, m: int, target: float, lr: float,
              count_std: float, gen: torch.Generator | None) -> float:
    """Andrew et al.'s geometric update: ``clip * exp(-lr * (b - target))`` with ``b`` the
    fraction ``(unclipped + N(0, count_std^2)) / m``."""
    noise = float(torch.randn((), generator=gen, dtype=torch.float64)) if count_std > 0 else 0.0
    b = (unclipped + count_std * noise) / m
    return clip * math.exp(-lr * (b - target))


def describe(record: dict[str, Any]) -> str:
    """One line on the privacy spent, from a round record's ``privacy``."""
    eps = "∞ (no noise)" if record["epsilon"] is None else f"{record['epsilon']:.3g}"
    return (f"privacy: ε = {eps} at δ = {record['delta']:g} after {record['steps']} noised "
            f"round(s) (noise multiplier {record['noise_multiplier']:g}, "
            f"clip {record['clip']:.3g})")


@functools.lru_cache(maxsize=64)
def _one_step(q: float, z: float) -> tuple[Any, Any]:
    """dp-accounting's RDP accountant after one Poisson-subsampled Gaussian step: its
    orders and RDP curve (computed once per (q, z): it takes about a second)."""
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant

    absl = logging.getLogger("absl")  # it warns for every order it cannot bound
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        accountant = rdp_privacy_accountant.RdpAccountant()
        accountant.compose(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)))
        return accountant.orders, accountant.rdp
    finally:
        absl.setLevel(level)


def epsilon(q: float, z: float, steps: int, delta: float) -> float:
    """The epsilon of ``steps`` Poisson-subsampled (rate ``q``) Gaussian mechanisms of
    noise multiplier ``z`` at ``delta``, from dp-accounting's RDP accountant: the RDP of
    ``steps`` compositions is ``steps`` times one step's (what the accountant itself
    composes), converted by its ``compute_epsilon``. ``inf`` without noise, 0 before
    the first step."""
    if steps == 0:
        return 0.0
    if z == 0:
        return math.inf
    from dp_accounting.rdp import rdp_privacy_accountant

    orders, rdp = _one_step(q, z)
    return float(rdp_privacy_accountant.compute_epsilon(orders, steps * rdp, delta)[0])


@dataclass(frozen=True)
class Privacy:
    """A run's DP-FedAvg settings (``[privacy]``) and the sampling rate ``q``."""

    noise_multiplier: float
    clip: float
    delta: float
    sample_rate: float  # clients per round / clients
    clients_per_round: int
    adaptive: bool = False
    target_quantile: float = 0.5
    clip_lr: float = 0.2
    count_noise: float = 0.0  # 0: clients per round / 20
    seed: int = 0

    @property
    def count_std(self) -> float:
        """The std of the noise on the unclipped count (adaptive clipping)."""
        if not self.adaptive or self.noise_multiplier == 0:
            return 0.0
        return self.count_noise or self.clients_per_round / 20

    @property
    def update_multiplier(self) -> float:
        return update_noise(self.noise_multiplier, self.count_std if self.adaptive else None)

    def steps_and_clip(self, extra: dict[str, torch.Tensor]) -> tuple[int, float]:
        """The steps taken and the current clip norm kept in the run state's ``extra``."""
        if STEPS not in extra:
            return 0, self.clip
        return int(extra[STEPS]), float(extra[CLIP])

    def targets(self, extra: dict[str, torch.Tensor], models: torch.Tensor,
                local: torch.Tensor, labels: torch.Tensor, round_: int
                ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """The round's noised cluster targets, their member counts, and the new ``extra``
        (one more step; the next clip norm when adaptive). Noise is keyed by (seed,
        round): every process of a run draws the same."""
        steps, clip = self.steps_and_clip(extra)
        gen = torch_gen(self.seed, PRIVACY, round_)
        std = self.update_multiplier * clip
        targets, counts, unclipped = noisy_targets(models, local, labels, clip, std, gen)
        if self.adaptive:
            clip = next_clip(clip, int(unclipped.sum()), len(labels), self.target_quantile,
                             self.clip_lr, self.count_std, gen)
        new = dict(extra)
        new[STEPS] = torch.tensor(steps + 1, dtype=torch.int64)
        new[CLIP] = torch.tensor(clip, dtype=torch.float64)
        return targets, counts, new

    def record(self, extra: dict[str, torch.Tensor]) -> dict[str, Any]:
        """What a round record says: epsilon so far (None when unbounded), delta, steps
        and the clip norm the next round uses."""
        steps, clip = self.steps_and_clip(extra)
        eps = epsilon(self.sample_rate, self.noise_multiplier, steps, self.delta)
        return {"epsilon": None if math.isinf(eps) else eps, "delta": self.delta,
                "steps": steps, "clip": clip, "noise_multiplier": self.noise_multiplier}

    @classmethod
    def of(cls, cfg: Any) -> Privacy | None:
        """The run's settings from a :class:`~fedcluster.config.Config` (None: off)."""
        p = cfg.privacy
        if not p.enabled:
            return None
        fields = {f.name for f in dataclasses.fields(cls)} & {
            f.name for f in dataclasses.fields(p)}
        return cls(**{f: getattr(p, f) for f in fields},
                   sample_rate=cfg.clients_per_round / cfg.data.num_clients,
                   clients_per_round=cfg.clients_per_round, seed=cfg.seed)
