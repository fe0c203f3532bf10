"""Stable cluster identity: match this round's groups to the existing cluster models.

Raw clustering labels are arbitrary in every round. Each group's aggregate is
matched to the existing model it is closest to (Hungarian algorithm on squared
distances, Kuhn 1955), so "cluster 2" stays the same model from round to round.
Groups beyond the number of models become new clusters.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["match_clusters"]


def match_clusters(candidates: torch.Tensor, models: torch.Tensor) -> np.ndarray:
    """``perm[j]``: the cluster id for group j. Groups are matched one-to-one to models
    minimising total squared distance; with more groups than models, the unmatched
    groups get new ids ``K, K+1, ...`` (farthest-from-every-model groups go last)."""
    cost = torch.cdist(candidates.double(), models.double()).pow(2).cpu().numpy()
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cost)
    perm = np.full(len(candidates), -1, dtype=np.int64)
    perm[rows] = cols
    extra = np.flatnonzero(perm < 0)
    perm[extra] = len(models) + np.arange(len(extra))
    return perm
