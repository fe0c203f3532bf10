"""The run directory: resolved config, partition, per-round metrics, summary and log.

``metrics.jsonl`` gets one JSON object per round, flushed as the round ends, so a
crash never loses a finished round and figures can be drawn while a run goes on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import IO

from ..config import config_to_toml
from ..records import RoundResult, RunContext, RunSummary
from .base import Callback

__all__ = ["RunFiles"]


class RunFiles(Callback):
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._metrics: IO[str] | None = None
        self._log: logging.Handler | None = None

    def on_run_start(self, ctx: RunContext) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._log = logging.FileHandler(self.run_dir / "run.log", encoding="utf-8")
        self._log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("fedcluster").addHandler(self._log)
        (self.run_dir / "config.toml").write_text(config_to_toml(ctx.config), encoding="utf-8")
        train, test = ctx.federation.label_counts()
        partition = {
            "num_classes": ctx.federation.dataset.num_classes,
            "train": train.tolist(),
            "eval": test.tolist(),
            "groups": ctx.federation.groups.tolist(),  # each client's true group
        }
        (self.run_dir / "partition.json").write_text(json.dumps(partition), encoding="utf-8")
        self._metrics = open(  # noqa: SIM115 (open for the whole run)
            self.run_dir / "metrics.jsonl", "a", encoding="utf-8")
        logging.getLogger("fedcluster").info(
            "run %s: %d clients, %d parameters on %s", ctx.config.name,
            ctx.federation.num_clients, ctx.model.numel, ctx.device)

    def on_round_end(self, result: RoundResult) -> None:
        assert self._metrics is not None
        self._metrics.write(json.dumps(result.to_json()) + "\n")
        self._metrics.flush()

    def on_run_end(self, summary: RunSummary) -> None:
        final = summary.final
        out = {
            "name": summary.context.config.name,
            "rounds": len(summary.rounds),
            "seconds": round(summary.seconds, 3),
            "stopped_early": summary.stopped_early,
            "error": summary.error,
            "final": final.to_json() if final else None,
        }
        (self.run_dir / "summary.json").write_text(json.dumps(out, indent=1), encoding="utf-8")
        if self._metrics is not None:
            self._metrics.close()
        if self._log is not None:
            logging.getLogger("fedcluster").removeHandler(self._log)
            self._log.close()
