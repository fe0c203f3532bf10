"""Measuring a clustering: SSE and silhouette per k (auto-k), agreement with the truth.

k is chosen by the silhouette (Rousseeuw, "Silhouettes: a graphical aid to the
interpretation and validation of cluster analysis", 1987): the k in ``2..k_max``
whose labelling has the largest mean silhouette. The SSE of every k (the
reference's elbow curve) is recorded next to it so the choice can be audited.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["agreement", "best_k", "round_diagnostics", "scan_k", "silhouette", "within_sse"]

Fit = Callable[[np.ndarray, int], np.ndarray]  # (points, k) -> labels


def within_sse(points: np.ndarray, labels: np.ndarray) -> float:
    """Sum of squared distances of the points to their group's mean."""
    total = 0.0
    for g in np.unique(labels):
        p = points[labels == g]
        total += float(((p - p.mean(axis=0)) ** 2).sum())
    return total


def silhouette(points: np.ndarray, labels: np.ndarray, metric: str = "euclidean") -> float | None:
    """Mean silhouette, or None where undefined (fewer than 2 or more than m-1 groups)."""
    n = len(np.unique(labels))
    if not 2 <= n <= len(points) - 1:
        return None
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(points, labels, metric=metric))


def scan_k(points: np.ndarray, fit: Fit, k_max: int,
           metric: str = "euclidean") -> tuple[dict[int, float], dict[int, float],
                                               dict[int, np.ndarray]]:
    """SSE for k = 1..k_max and silhouette for k = 2..k_max (capped by the number of
    points); also returns each k's labels."""
    m = len(points)
    sse, sil, labels = {}, {}, {}
    for k in range(1, min(k_max, m) + 1):
        lab = np.zeros(m, dtype=np.int64) if k == 1 else fit(points, k)
        labels[k], sse[k] = lab, within_sse(points, lab)
        s = silhouette(points, lab, metric) if k >= 2 else None
        if s is not None:
            sil[k] = s
    return sse, sil, labels


def best_k(silhouettes: dict[int, float]) -> int:
    """The k with the largest silhouette (the smallest such k on ties); 1 if none."""
    if not silhouettes:
        return 1
    return max(silhouettes, key=lambda k: (silhouettes[k], -k))


def agreement(truth: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Adjusted Rand index and NMI of ``labels`` against ``truth`` (invariant to renaming)."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return (float(adjusted_rand_score(truth, labels)),
            float(normalized_mutual_info_score(truth, labels)))


def round_diagnostics(grouping: Any, points: np.ndarray, labels: np.ndarray,
                      previous: np.ndarray, assignment: np.ndarray, k: int, seed: int,
                      k_max: int, n_init: int) -> dict[str, Any]:
    """What a clustering round reports: whether the method (re)clustered, the cluster
    sizes over all placed clients (``assignment``), the silhouette, how many clients
    changed cluster (``previous`` before the round, -1: new), and the elbow curve
    (SSE and silhouette per k; computed with k-means when the method gave none)."""
    sse, sil = grouping.sse_per_k, grouping.silhouette_per_k
    if grouping.clustered and sse is None:  # the elbow curve, for any method
        from .kmeans import kmeans_labels

        sse, sil, _ = scan_k(points, lambda p, kk: kmeans_labels(p, kk, seed, n_init), k_max)
    placed = assignment[assignment >= 0]
    return {
        "clustered": grouping.clustered,
        "cluster_sizes": np.bincount(placed, minlength=k).tolist(),
        "silhouette": silhouette(points, labels),
        "changed": int(((previous >= 0) & (previous != labels)).sum()),
        "sse_per_k": sse,
        "silhouette_per_k": sil,
        **grouping.extra,
    }
