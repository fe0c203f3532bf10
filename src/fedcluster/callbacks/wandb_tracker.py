"""Weights & Biases: one W&B run per fedcluster run (optional extra: ``pip install
"fedcluster[wandb]"``).

Offline by default (``wandb.mode = "offline"``): everything is written under
``<wandb.dir or the run directory>/wandb/offline-run-*`` and needs no network or
account; ``wandb sync`` uploads it later. The config is the resolved config (nested as
in the file, secrets masked); each round logs :func:`~.scalars.round_scalars` with the
round as step; at the end the models become a ``model`` artifact and the report,
figures, summary, config and metrics a ``report`` artifact. No console capture, system metrics
or code saving: the run's own output stays as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import WandbConfig
from ..extras import require_extra
from ..records import RoundResult, RunContext, RunSummary
from .scalars import round_scalars
from .tracker import Tracker, artifact_paths, finished_status

__all__ = ["WandbTracker"]


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, cfg: WandbConfig) -> None:
        require_extra("wandb")
        super().__init__()
        self.cfg = cfg
        self.run: Any = None
        self.run_dir: Path | None = None

    def _start(self, ctx: RunContext) -> None:
        import wandb

        self.run_dir = ctx.run_dir
        where = Path(self.cfg.dir or ctx.run_dir or Path.cwd())
        where.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(console="off", silent=True, x_disable_stats=True,
                                  disable_git=True, save_code=False)
        self.run = wandb.init(
            project=self.cfg.project, entity=self.cfg.entity or None, mode=self.cfg.mode,
            name=ctx.run_dir.name if ctx.run_dir is not None else ctx.config.name,
            dir=str(where), config=ctx.config.to_dict(), settings=settings,
            job_type=ctx.config.mode, reinit="create_new")

    def _round(self, result: RoundResult) -> None:
        self.run.log(round_scalars(result), step=result.round)

    def _end(self, summary: RunSummary) -> None:
        import wandb

        files = artifact_paths(self.run_dir)
        for kind, paths in (("model", [p for p in files if p.name == "models"]),
                            ("report", [p for p in files if p.name != "models"])):
            if not paths:
                continue
            art = wandb.Artifact(f"{self.run.name}-{kind}", type=kind,
                                 metadata={"round": summary.round, "reason": summary.reason})
            for path in paths:
                if path.is_dir():
                    art.add_dir(str(path), name=path.name if kind == "report" else None)
                else:
                    art.add_file(str(path))
            self.run.log_artifact(art)
        self.run.summary["reason"] = summary.reason
        self.run.finish(exit_code=0 if finished_status(summary) == "completed" else 1)
        self.run = None

    def _abandon(self) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1, quiet=True)
            self.run = None
