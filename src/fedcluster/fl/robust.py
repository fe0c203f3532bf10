"""Byzantine-robust aggregation rules: pure functions of one cluster's ``[m, D]`` rows.

- :func:`coordinate_median`, :func:`trimmed_mean`: Yin, Chen, Ramchandran, Bartlett,
  "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates", ICML 2018.
- :func:`krum` (``m = 1``) and multi-Krum (``m > 1``): Blanchard, El Mhamdi, Guerraoui,
  Stainer, "Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent",
  NeurIPS 2017.
- :func:`bulyan`: El Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability of
  Distributed Learning in Byzantium", ICML 2018.
- :func:`norm_clip`: each row scaled to an L2 norm of at most ``bound``.
- :func:`nearest_neighbor_mixing`, a step before any rule (``server.mixing = "nnm"``):
  Allouah, Farhadkhani, Guerraoui, Gupta, Pinot, Stephan, "Fixing by Mixing: A Recipe
  for Optimal Byzantine ML under Heterogeneity", AISTATS 2023. Each row becomes the mean
  of its ``n - f`` nearest rows, so honest rows from heterogeneous (non-IID) clients
  come close together before a coordinate-wise or selecting rule sees them.

Every rule counts each row once, whatever the client's data size: a weight is a number
the client reports, and a rule that let a client buy influence with it would not be
robust. The server applies a rule to each cluster's local models (start + update); in a
run over several processes every process holds every gathered row, so each applies the
rule to all rows and gets the same result without an all-reduce.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["MIXINGS", "RULES", "Rule", "bulyan", "coordinate_median", "group_targets", "krum",
           "min_rows", "nearest_neighbor_mixing", "norm_clip", "trimmed_mean"]

RULES = ("mean", "median", "trimmed-mean", "krum", "multi-krum", "bulyan")
MIXINGS = ("none", "nnm")


CHUNK = 1 << 16  # columns sorted at a time: the sort's copies are [m, CHUNK], not [m, D]


def _by_columns(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``fn`` (a column-wise rule ``[m, d] -> [d]``) over blocks of ``CHUNK`` columns."""
    if x.shape[1] <= CHUNK:
        return fn(x)
    return torch.cat([fn(x[:, s:s + CHUNK]) for s in range(0, x.shape[1], CHUNK)])


def _median(x: torch.Tensor) -> torch.Tensor:
    s = x.sort(dim=0).values
    m = x.shape[0]
    return (s[(m - 1) // 2] + s[m // 2]) / 2


def coordinate_median(x: torch.Tensor) -> torch.Tensor:
    """The median of each column of ``x`` ``[m, D]``; for even ``m`` the mean of the two
    middle values."""
    return _by_columns(_median, x)


def trimmed_mean(x: torch.Tensor, beta: float) -> torch.Tensor:
    """The mean of each column of ``x`` ``[m, D]`` without its ``floor(beta * m)`` smallest
    and as many largest values (``0 <= beta < 0.5``)."""
    if not 0 <= beta < 0.5:
        raise ValueError(f"trimmed_mean needs 0 <= beta < 0.5, got {beta}")
    m = x.shape[0]
    b = int(beta * m)
    return _by_columns(lambda c: c.sort(dim=0).values[b:m - b].mean(dim=0), x)


def _sq_distances(x: torch.Tensor) -> torch.Tensor:
    """``[m, m]`` squared Euclidean distances between rows, in float64 (from the Gram
    matrix, summed over blocks of ``CHUNK`` columns)."""
    gram = torch.zeros(x.shape[0], x.shape[0], dtype=torch.float64, device=x.device)
    for s in range(0, x.shape[1], CHUNK):
        d = x[:, s:s + CHUNK].to(torch.float64)
        gram += d @ d.T
    sq = gram.diagonal()
    return (sq[:, None] + sq[None, :] - 2 * gram).clamp_min_(0)


def _krum_scores(dist: torch.Tensor, f: int) -> torch.Tensor:
    """Each row's sum of squared distances to its ``n - f - 2`` nearest other rows."""
    n = dist.shape[0]
    near = max(n - f - 2, 0)
    others = dist + torch.diag(torch.full((n,), float("inf"), dtype=dist.dtype))
    return others.sort(dim=1).values[:, :near].sum(dim=1)


def krum_select(x: torch.Tensor, f: int, m: int = 1) -> torch.Tensor:
    """The indices of the ``m`` rows with the lowest Krum scores (ties: the lower index)."""
    scores = _krum_scores(_sq_distances(x), f)
    return torch.sort(scores, stable=True).indices[:m]


def krum(x: torch.Tensor, f: int, m: int = 1) -> torch.Tensor:
    """Krum (``m = 1``: the row closest to its ``n - f - 2`` nearest neighbours) or
    multi-Krum (``m > 1``: the mean of the ``m`` best-scored rows), for up to ``f``
    Byzantine rows among ``n > 2f + 2``."""
    n = x.shape[0]
    if n <= 2 * f + 2 or not 1 <= m <= n:
        raise ValueError(f"krum needs n > 2f + 2 rows and 1 <= m <= n (n={n}, f={f}, m={m})")
    return x[krum_select(x, f, m)].mean(dim=0)


def bulyan(x: torch.Tensor, f: int) -> torch.Tensor:
    """Bulyan for up to ``f`` Byzantine rows among ``n >= 4f + 3``: Krum picks
    ``theta = n - 2f`` rows one at a time (each pick leaves the set); in each column the
    ``beta = theta - 2f`` picked values closest to the picked values' median are averaged
    (ties: the earlier pick)."""
    n = x.shape[0]
    if n < 4 * f + 3:
        raise ValueError(f"bulyan needs n >= 4f + 3 rows (n={n}, f={f})")
    dist = _sq_distances(x)
    left = list(range(n))
    picked = []
    for _ in range(n - 2 * f):
        sub = torch.tensor(left)
        best = int(torch.sort(_krum_scores(dist[sub][:, sub], f), stable=True).indices[0])
        picked.append(left.pop(best))
    beta = len(picked) - 2 * f

    def nearest_to_median(c: torch.Tensor) -> torch.Tensor:
        order = torch.sort((c - _median(c)).abs(), dim=0, stable=True).indices[:beta]
        return c.gather(0, order).mean(dim=0)

    return _by_columns(nearest_to_median, x[torch.tensor(picked)])


def norm_clip(x: torch.Tensor, bound: float) -> torch.Tensor:
    """The rows of ``x`` scaled to an L2 norm of at most ``bound`` (norms in float64)."""
    norms = torch.linalg.vector_norm(x, dim=1, dtype=torch.float64)
    factor = (bound / norms.clamp_min(torch.finfo(torch.float64).tiny)).clamp_max(1.0)
    return x * factor.to(x.dtype)[:, None]


def nearest_neighbor_mixing(x: torch.Tensor, f: int) -> torch.Tensor:
    """Each row of ``x`` ``[n, D]`` replaced by the mean of its ``n - f`` nearest rows in
    L2 distance, itself included (ties: the lower index), for ``0 <= f < n``."""
    n = x.shape[0]
    if not 0 <= f < n:
        raise ValueError(f"nearest_neighbor_mixing needs 0 <= f < n (n={n}, f={f})")
    near = torch.sort(_sq_distances(x), dim=1, stable=True).indices[:, :n - f]
    mix = torch.zeros(n, n, dtype=x.dtype, device=x.device)
    mix.scatter_(1, near, 1.0)
    return (mix @ x) / (n - f)


def min_rows(name: str, f: int) -> int:
    """The fewest rows the rule ``name`` accepts with ``f`` Byzantine rows."""
    return {"krum": 2 * f + 3, "multi-krum": 2 * f + 3, "bulyan": 4 * f + 3}.get(name, 1)


@dataclass(frozen=True)
class Rule:
    """A robust rule as configured (``server.aggregator``, ``server.trim``,
    ``server.byzantine``, ``server.mixing``)."""

    name: str
    trim: float = 0.1
    byzantine: int = 0
    mixing: str = "none"

    def __post_init__(self) -> None:
        if self.name not in RULES or self.name == "mean":
            raise ValueError(f"not a robust rule: {self.name!r}")
        if self.mixing not in MIXINGS:
            raise ValueError(f"unknown mixing {self.mixing!r}; expected one of {MIXINGS}")

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The rule over the rows of one cluster; a cluster with fewer rows than the rule
        needs (:func:`min_rows`) gets their coordinate median. With ``mixing = "nnm"``
        the rows are mixed first, each with its ``n - f'`` nearest, where ``f' = min(f,
        (n - 1) // 2)``: a cluster is not told how many attackers it holds, so each
        assumes all ``f`` (a majority of neighbours, at least, stays)."""
        f = self.byzantine
        if self.mixing == "nnm":
            x = nearest_neighbor_mixing(x, min(f, (x.shape[0] - 1) // 2))
        if x.shape[0] < min_rows(self.name, f):
            return coordinate_median(x)
        rules: dict[str, Callable[[], torch.Tensor]] = {
            "median": lambda: coordinate_median(x),
            "trimmed-mean": lambda: trimmed_mean(x, self.trim),
            "krum": lambda: krum(x, f),
            "multi-krum": lambda: krum(x, f, x.shape[0] - f),
            "bulyan": lambda: bulyan(x, f),
        }
        return rules[self.name]()


def group_targets(rule: Rule, rows: torch.Tensor, labels: torch.Tensor, k: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(targets [k, D], counts [k])``: ``rule`` over the rows labelled ``g`` for each of
    ``k`` groups; a group without rows has a zero target and count 0."""
    targets = torch.zeros(k, rows.shape[1], dtype=rows.dtype, device=rows.device)
    counts = torch.bincount(labels, minlength=k).to(torch.float64)
    for g in torch.nonzero(counts > 0).flatten().tolist():
        targets[g] = rule.apply(rows[labels == g])
    return targets, counts
