"""What a run produces: one record per round, and a summary at the end.

Records are plain data; :meth:`RoundResult.to_json` is the line written to
``metrics.jsonl``, and figures and reports are drawn from those lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .config import Config
from .data.federation import Federation
from .fl.evaluate import EvalStats
from .fl.flat import FlatModel

__all__ = ["ClientResult", "ClusterResult", "RoundResult", "RunContext", "RunSummary"]


def _num(x: float | None) -> float | None:
    """JSON has no NaN: missing values are null."""
    return None if x is None or math.isnan(x) else float(x)


@dataclass(frozen=True)
class ClusterResult:
    id: int
    members: list[int]
    accuracy: float
    top5: float
    loss: float
    eval_examples: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "members": self.members, "size": len(self.members),
                "accuracy": _num(self.accuracy), "top5": _num(self.top5),
                "loss": _num(self.loss), "eval_examples": self.eval_examples}


@dataclass(frozen=True)
class ClientResult:
    id: int
    cluster: int
    train_loss: float
    num_examples: int
    steps: int
    xy: tuple[float, float] | None = None  # 2-D projection of its update, when made
    accuracy: float | None = None  # with its cluster's model, on its own eval set

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "cluster": self.cluster, "train_loss": _num(self.train_loss),
               "num_examples": self.num_examples, "steps": self.steps,
               "accuracy": _num(self.accuracy)}
        if self.xy is not None:
            out["xy"] = [float(v) for v in self.xy]
        return out


@dataclass(frozen=True)
class RoundResult:
    round: int
    accuracy: float  # over all clients' eval sets, each with its cluster's model
    top5: float
    loss: float
    clusters: list[ClusterResult]
    clients: list[ClientResult]  # the clients sampled this round
    seconds: float
    sse: float | None = None
    empty: list[int] = field(default_factory=list)
    ari: float | None = None  # of the clustering against the true groups (placed clients)
    nmi: float | None = None
    client_accuracy: dict[str, float] = field(default_factory=dict)  # mean, p10, min
    clustering: dict[str, Any] = field(default_factory=dict)  # diagnostics, when clustered
    profile: dict[str, float] | None = None  # seconds per section, with run.profile
    rejected: dict[int, str] = field(default_factory=dict)  # client -> why it was left out
    clipped: list[int] = field(default_factory=list)  # clients scaled to max_update_norm
    skipped: bool = False  # too few accepted updates (server.min_clients): no model step
    attackers: list[int] = field(default_factory=list)  # sampled clients that attacked
    privacy: dict[str, Any] | None = None  # epsilon so far, delta, steps, clip ([privacy])
    # personalised algorithms: each client's accuracy with its cluster's model and with its
    # own, and the own models' pooled stats (fl/personal.py)
    personal: tuple[dict[int, float], dict[int, float], EvalStats] | None = None

    def to_json(self) -> dict[str, Any]:
        diag = dict(self.clustering)
        for key in ("sse_per_k", "silhouette_per_k"):  # JSON keys are strings: "k": value
            if diag.get(key) is not None:
                diag[key] = {str(k): _num(v) for k, v in diag[key].items()}
        out = {"round": self.round, "accuracy": _num(self.accuracy), "top5": _num(self.top5),
                "loss": _num(self.loss), "seconds": round(self.seconds, 4), "sse": _num(self.sse),
                "empty_clusters": self.empty, "k": len(self.clusters),
                "ari": _num(self.ari), "nmi": _num(self.nmi),
                **{f"client_accuracy_{q}": _num(self.client_accuracy.get(q))
                   for q in ("mean", "p10", "min")},
                **diag,
                "clusters": [c.to_json() for c in self.clusters],
                "clients": [c.to_json() for c in self.clients],
                "rejected": {str(c): why for c, why in self.rejected.items()},
                "clipped": self.clipped, "skipped": self.skipped,
                "attackers": self.attackers,  # and those whose update the server accepted:
                "attackers_kept": [a for a in self.attackers if a not in self.rejected]}
        if self.profile is not None:
            out["profile"] = self.profile
        if self.privacy is not None:
            out["privacy"] = self.privacy
        if self.personal is not None:
            out.update(_personal_json(*self.personal))
        return out


def _personal_json(cluster: dict[int, float], own: dict[int, float],
                   pooled: EvalStats) -> dict[str, Any]:
    """The record's personalised figures: the own models' pooled accuracy and mean over
    clients, and each client's accuracy with its cluster's model and its own."""
    mean = sum(own.values()) / len(own) if own else math.nan
    return {"personal_accuracy": _num(pooled.accuracy), "personal_client_mean": _num(mean),
            "personal_clients": {str(c): {"cluster": _num(cluster.get(c, math.nan)),
                                          "personal": _num(a)} for c, a in own.items()}}


@dataclass(frozen=True)
class RunContext:
    """Handed to callbacks at run start."""

    config: Config
    run_dir: Path | None
    federation: Federation
    model: FlatModel
    device: torch.device
    workers: int = 1  # clients trained at once by the sequential engine (run.workers)
    start_round: int = 0  # rounds already done when this process started (a resumed run)


@dataclass(frozen=True)
class RunSummary:
    """Handed to callbacks at run end, also after an error (``error`` is then set)."""

    context: RunContext
    rounds: list[RoundResult]
    models: torch.Tensor  # [k, D] the final cluster models
    seconds: float
    stopped_early: bool = False
    error: str | None = None
    # why the run ended: "completed", "early-stop", "SIGTERM", "SIGINT", "KeyboardInterrupt"
    # or "error"
    reason: str = "completed"
    round: int = -1  # the round ``models`` belong to (-1: the last of ``rounds``, or 0)

    def __post_init__(self) -> None:
        if self.round < 0:
            object.__setattr__(self, "round", self.rounds[-1].round if self.rounds else 0)

    @property
    def final(self) -> RoundResult | None:
        return self.rounds[-1] if self.rounds else None
