"""KMeans on client updates, every round or once: the reference program's method.

k-means with k-means++ seeding (Arthur & Vassilvitskii, "k-means++: the advantages
of careful seeding", SODA 2007) on the clustering points of features.py; this is
the per-round clustering of client weights that IFCA and CFL are usually compared
against (e.g. Ghosh et al. 2020, Sattler et al. 2019).
"""

from __future__ import annotations

import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from ...config import ClusterConfig
from .base import METHODS
from .update_based import UpdateClustering

__all__ = ["kmeans_labels", "kmeans_method"]


def kmeans_labels(points: np.ndarray, k: int, seed: int, n_init: int = 10) -> np.ndarray:
    """KMeans (k-means++) labels of the rows of ``points``; fewer groups if fewer
    distinct rows than ``k``."""
    if k > len(points):
        raise ValueError(f"cannot form {k} clusters from {len(points)} points")
    from sklearn.cluster import KMeans  # imported here: sklearn takes about a second
    from sklearn.exceptions import ConvergenceWarning

    # One OpenMP/BLAS thread: scikit-learn's pools fight torch's spinning OpenMP workers
    # for the same cores (a 20-point KMeans took 1-3 s instead of ~0.1 s on 2 cores).
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct points than k
        km = KMeans(n_clusters=k, init="k-means++", n_init=n_init, random_state=seed % 2**32)
        return km.fit_predict(points).astype(np.int64)


@METHODS.register("kmeans")
def kmeans_method(cfg: ClusterConfig) -> UpdateClustering:
    def fit(points: np.ndarray, k: int, seed: int) -> np.ndarray:
        return kmeans_labels(points, k, seed, cfg.n_init)

    return UpdateClustering(fit, cfg.k, cfg.k_max, cfg.resolved_schedule, cfg.resolved_warmup)
