"""The numbers of one round as named scalars, shared by TensorBoard and the trackers."""

from __future__ import annotations

import math

from ..records import RoundResult

__all__ = ["round_scalars"]


def round_scalars(result: RoundResult) -> dict[str, float]:
    """``{"overall/accuracy": ..., "cluster_0/loss": ..., "clustering/ari": ...}`` for one
    round; values that are unknown (None) or NaN are left out.

    Overall and per-cluster accuracy, top-5 accuracy and loss, each cluster's size, the
    clustering SSE, the clients that changed cluster, ARI and NMI against the true groups
    (where known), the clients' accuracy mean / p10 / min, and the round's seconds.
    """
    raw: dict[str, float | None] = {}
    for key in ("accuracy", "top5", "loss"):
        raw[f"overall/{key}"] = getattr(result, key)
        for c in result.clusters:
            raw[f"cluster_{c.id}/{key}"] = getattr(c, key)
    for c in result.clusters:
        raw[f"cluster_{c.id}/size"] = float(len(c.members))
    raw["clustering/sse"] = result.sse
    raw["clustering/ari"] = result.ari
    raw["clustering/nmi"] = result.nmi
    changed = result.clustering.get("changed")
    raw["clustering/changed"] = None if changed is None else float(changed)
    for q in ("mean", "p10", "min"):
        raw[f"clients/accuracy_{q}"] = result.client_accuracy.get(q)
    raw["time/round_seconds"] = result.seconds
    return {k: float(v) for k, v in raw.items() if v is not None and not math.isnan(v)}
