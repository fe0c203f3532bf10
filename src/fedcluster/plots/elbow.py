"""The SSE-vs-k ("elbow") curve of a round's clustering.

Taken from the round's ``sse_per_k`` diagnostics when the run recorded them;
otherwise recomputed from the round's 2-D projections of the client updates
(``clients[].xy``), with KMeans (k-means++) for each k as the reference does.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["round_sse_per_k", "sse_per_k"]


def sse_per_k(points: np.ndarray, k_max: int = 10, seed: int = 0,
              n_init: int = 4) -> dict[int, float]:
    """KMeans inertia for k = 1 .. min(k_max, number of distinct points)."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    points = np.asarray(points, dtype=np.float64)
    distinct = len(np.unique(points, axis=0)) if len(points) else 0
    out: dict[int, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for k in range(1, min(k_max, distinct) + 1):
            km = KMeans(n_clusters=k, init="k-means++", n_init=n_init, random_state=seed)
            out[k] = float(km.fit(points).inertia_)
    return out


def _parse(value: Any) -> dict[int, float] | None:
    """``sse_per_k`` as {k: sse}; accepts a {"k": sse} map, [[k, sse], ...] pairs,
    [{"k": k, "sse": sse}, ...] records, or a list of SSEs for k = 1, 2, ..."""
    if isinstance(value, dict):
        return {int(k): float(v) for k, v in value.items() if v is not None}
    if isinstance(value, list) and value:
        if all(isinstance(v, dict) for v in value):
            return {int(v["k"]): float(v["sse"]) for v in value if v.get("sse") is not None}
        if all(isinstance(v, (list, tuple)) and len(v) == 2 for v in value):
            return {int(k): float(s) for k, s in value if s is not None}
        return {i + 1: float(v) for i, v in enumerate(value) if v is not None}
    return None


def round_sse_per_k(round_: dict[str, Any], k_max: int = 10,
                    seed: int = 0) -> dict[int, float] | None:
    """A round record's SSE per k: recorded, else from its clients' ``xy``; None when
    neither is there (no clustering, or no 2-D projection)."""
    recorded = _parse(round_.get("sse_per_k"))
    if recorded:
        return dict(sorted(recorded.items()))
    xy = [c["xy"] for c in round_.get("clients", []) if c.get("xy") is not None]
    if len(xy) < 2:
        return None
    return sse_per_k(np.array(xy), k_max, seed)
