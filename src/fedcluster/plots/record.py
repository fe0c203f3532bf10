"""A run directory read back as data: the per-round records, partition, config, summary.

Figures and reports are drawn from this, never from the training loop, so any run,
finished or still going, can be redrawn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RunRecord", "load_record"]


@dataclass(frozen=True)
class RunRecord:
    run_dir: Path
    rounds: list[dict[str, Any]]  # the lines of metrics.jsonl
    partition: dict[str, Any] | None  # partition.json: num_classes, train, eval label counts
    config_text: str  # config.toml as saved (secrets masked)
    summary: dict[str, Any] | None  # summary.json, once the run has ended

    @property
    def name(self) -> str:
        if self.summary and self.summary.get("name"):
            return str(self.summary["name"])
        return self.run_dir.name

    @property
    def num_clients(self) -> int:
        if self.partition is not None:
            return len(self.partition["train"])
        ids = [c["id"] for r in self.rounds for c in r["clients"] if c["id"] >= 0]
        ids += [m for r in self.rounds for c in r["clusters"] for m in c["members"]]
        return max(ids, default=-1) + 1

    @property
    def groups(self) -> np.ndarray | None:
        """Each client's true group (partition.json), or None unless there are at least
        two groups (``data.groups > 1``)."""
        groups = (self.partition or {}).get("groups")
        if not groups or len(set(groups)) < 2:
            return None
        return np.asarray(groups, dtype=np.int64)

    @property
    def k(self) -> int:
        return max((len(r["clusters"]) for r in self.rounds), default=0)

    def series(self, key: str) -> np.ndarray:
        """Overall ``key`` (accuracy, top5, loss) per round, NaN where missing."""
        return np.array([_val(r.get(key)) for r in self.rounds], dtype=float)

    def cluster_series(self, key: str) -> np.ndarray:
        """``[rounds, k]`` of a per-cluster value, NaN where missing."""
        out = np.full((len(self.rounds), self.k), np.nan)
        for i, r in enumerate(self.rounds):
            for c in r["clusters"]:
                out[i, c["id"]] = _val(c.get(key))
        return out

    def client_losses(self) -> np.ndarray:
        """``[rounds, clients]`` training loss, NaN for clients not sampled that round
        (the pooled baseline's loss, recorded under client id -1, is :meth:`pooled_loss`)."""
        return self._per_client("train_loss")

    def client_accuracies(self) -> np.ndarray:
        """``[rounds, clients]`` each sampled client's accuracy with its cluster's model on
        its own eval set, NaN where not recorded."""
        return self._per_client("accuracy")

    def _per_client(self, key: str) -> np.ndarray:
        out = np.full((len(self.rounds), self.num_clients), np.nan)
        for i, r in enumerate(self.rounds):
            for c in r["clients"]:
                if 0 <= c["id"] < self.num_clients:
                    out[i, c["id"]] = _val(c.get(key))
        return out

    def pooled_loss(self) -> np.ndarray | None:
        """The centralised baseline's training loss per round (client id -1), or None."""
        out = np.full(len(self.rounds), np.nan)
        for i, r in enumerate(self.rounds):
            for c in r["clients"]:
                if c["id"] < 0:
                    out[i] = _val(c.get("train_loss"))
        return None if np.isnan(out).all() else out

    def assignment(self, i: int = -1) -> np.ndarray:
        """Each client's cluster after round ``rounds[i]`` (-1: not assigned)."""
        out = np.full(self.num_clients, -1, dtype=np.int64)
        if self.rounds:
            for c in self.rounds[i]["clusters"]:
                out[c["members"]] = c["id"]
        return out

    def membership(self) -> np.ndarray:
        """``[clients, rounds]`` cluster of every client after each round, -1 before its
        first assignment."""
        out = np.full((self.num_clients, len(self.rounds)), -1, dtype=np.int64)
        for i, r in enumerate(self.rounds):
            for c in r["clusters"]:
                out[c["members"], i] = c["id"]
        return out


def _val(x: Any) -> float:
    return np.nan if x is None else float(x)


def _read_json(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def load_record(run_dir: str | Path) -> RunRecord:
    """Read a run directory; the last metrics line may be half-written (a running run)."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no metrics.jsonl here; expected the directory "
                                "of a fedcluster run (fedcluster run --out DIR)")
    lines = path.read_text(encoding="utf-8").splitlines()
    rounds = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rounds.append(json.loads(line))
        except json.JSONDecodeError as e:
            if n == len(lines):
                break  # the line being written right now
            raise ValueError(f"{path}, line {n}: not valid JSON ({e})") from None
    config = run_dir / "config.toml"
    return RunRecord(
        run_dir=run_dir,
        rounds=rounds,
        partition=_read_json(run_dir / "partition.json"),
        config_text=config.read_text(encoding="utf-8") if config.exists() else "",
        summary=_read_json(run_dir / "summary.json"),
    )
