"""One-shot hierarchical clustering of client updates (FL+HC).

Briggs, Fan & Andras, "Federated learning with hierarchical clustering of local
updates to improve training on non-IID data", IJCNN 2020: after a few rounds of
FedAvg, the clients' updates from the shared model are clustered once by
agglomerative clustering (here average linkage in the configured metric, cosine
in the paper), cut at k clusters or at a distance threshold; each cluster then
runs FedAvg on its own, starting from the warm-up model.
"""

from __future__ import annotations

import numpy as np

from ...config import ClusterConfig
from .base import METHODS
from .update_based import UpdateClustering

__all__ = ["agglomerative_labels", "hierarchical_method"]


def agglomerative_labels(points: np.ndarray, k: int | None, metric: str = "cosine",
                         threshold: float | None = None) -> np.ndarray:
    """Average-linkage labels: ``k`` clusters, or a cut at distance ``threshold``."""
    if len(points) == 1:
        return np.zeros(1, dtype=np.int64)
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(n_clusters=k if threshold is None else None,
                                    distance_threshold=threshold, metric=metric,
                                    linkage="average")
    return model.fit_predict(points).astype(np.int64)


@METHODS.register("hierarchical")
def hierarchical_method(cfg: ClusterConfig) -> UpdateClustering:
    def fit(points: np.ndarray, k: int, seed: int) -> np.ndarray:
        return agglomerative_labels(points, k, cfg.metric)

    fit_all = None
    if cfg.distance_threshold > 0:
        def fit_all(points: np.ndarray) -> np.ndarray:
            return agglomerative_labels(points, None, cfg.metric, cfg.distance_threshold)

    return UpdateClustering(fit, cfg.k, cfg.k_max, cfg.resolved_schedule, cfg.resolved_warmup,
                            cfg.metric, fit_all)
