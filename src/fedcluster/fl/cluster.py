"""Clustering client updates into k groups, and keeping cluster identity stable.

The reference's method: reduce the update vectors with PCA to 2-D, then KMeans with
k-means++ initialisation. Raw KMeans labels are arbitrary in every round, so the
groups are matched to the existing k models by the Hungarian algorithm on the
distance between each group's aggregate and each model: "cluster 2" stays the
same model from round to round.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning

__all__ = ["Clustering", "kmeans_cluster", "match_clusters"]


@dataclass(frozen=True)
class Clustering:
    labels: np.ndarray  # [m] group of each update, in 0..k-1
    coords: np.ndarray | None  # [m, 2] the 2-D projection, when one was made
    sse: float  # KMeans inertia in the clustered space


def kmeans_cluster(updates: torch.Tensor, k: int, seed: int, reduce: str = "pca2",
                   n_init: int = 10) -> Clustering:
    """Cluster the rows of ``updates`` into ``k`` groups (fewer if fewer distinct rows)."""
    points = updates.detach().to("cpu", torch.float64).numpy()
    m = points.shape[0]
    if k > m:
        raise ValueError(f"cannot form {k} clusters from {m} updates")
    coords = None
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        if reduce == "pca2":  # identical updates have zero variance: harmless here
            dims = min(2, m, points.shape[1])
            coords = PCA(n_components=dims, random_state=seed % 2**32).fit_transform(points)
            points = coords
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct points than k
        km = KMeans(n_clusters=k, init="k-means++", n_init=n_init, random_state=seed % 2**32)
        labels = km.fit_predict(points)
    return Clustering(labels.astype(np.int64), coords, float(km.inertia_))


def match_clusters(candidates: torch.Tensor, present: np.ndarray,
                   models: torch.Tensor) -> np.ndarray:
    """Map group j to cluster ``perm[j]`` minimising the total squared distance between
    each present group's candidate model and the existing model it replaces."""
    cost = torch.cdist(candidates.double(), models.double()).pow(2).cpu().numpy()
    cost[~present] = 0.0  # absent groups take whatever clusters are left
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(len(rows), dtype=np.int64)
    perm[rows] = cols
    return perm
