"""What the experiment trackers (MLflow, Weights & Biases) share.

A tracker logs the resolved config as parameters (secrets masked) when the run starts,
each round's scalars (:func:`~.scalars.round_scalars`) as it ends, and the run's files
(models, report, summary, config, metrics) as artifacts at the end. It is never
critical: its first failure (a server that cannot be reached, a full disk) logs one
warning without a traceback, and it does nothing more for the rest of the run, so
training goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from .. import secrets
from ..config import Config
from ..records import RoundResult, RunContext, RunSummary
from ..resume import flat_keys
from .base import Callback

__all__ = ["ARTIFACTS", "Tracker", "artifact_paths", "config_params", "finished_status"]

log = logging.getLogger(__name__)

# the run directory's files a tracker keeps (not the checkpoint: it is for resuming)
ARTIFACTS = ("config.toml", "summary.json", "metrics.jsonl", "partition.json", "report.html",
             "models", "figures")


def config_params(cfg: Config) -> dict[str, str]:
    """The resolved config as flat ``{"section.key": "value"}`` strings, secrets masked."""
    return {k: v if isinstance(v, str) else json.dumps(v)
            for k, v in flat_keys(cfg.to_dict()).items()}


def artifact_paths(run_dir: Path | None) -> list[Path]:
    """The files and folders of :data:`ARTIFACTS` that ``run_dir`` holds."""
    if run_dir is None:
        return []
    return [Path(run_dir) / name for name in ARTIFACTS if (Path(run_dir) / name).exists()]


def finished_status(summary: RunSummary) -> str:
    """``"completed"`` (also after an early stop), ``"failed"`` or ``"killed"`` (a signal)."""
    if summary.reason in ("completed", "early-stop"):
        return "completed"
    return "failed" if summary.error is not None or summary.reason == "error" else "killed"


class Tracker(Callback):
    """An experiment tracker: subclasses implement ``_start``, ``_round``, ``_end`` and
    ``_abandon``; this class keeps a failure from ever reaching the run."""

    #: the name in warnings, e.g. "mlflow"
    name: ClassVar[str] = "tracker"

    def __init__(self, hidden: list[str] = ()) -> None:
        self.failed = False
        self.hidden = [h for h in hidden if h]  # secrets to mask in the warning

    def _guard(self, what: str, step: Callable[..., None], *args: Any) -> None:
        if self.failed:
            return
        try:
            step(*args)
        except Exception as e:  # noqa: BLE001 - a tracker never stops training
            self.failed = True
            why = secrets.mask_text(f"{type(e).__name__}: {e}".strip(), self.hidden)
            first = why.splitlines()[0] if why else type(e).__name__
            log.warning("%s: %s failed (%s); the run goes on without %s", self.name, what,
                        first[:500], self.name)
            try:
                self._abandon()
            except Exception:  # noqa: BLE001 - already failed; nothing more to say
                log.debug("%s: cleaning up after the failure failed too", self.name,
                          exc_info=True)

    def on_run_start(self, ctx: RunContext) -> None:
        self._guard("starting its run", self._start, ctx)

    def on_round_end(self, result: RoundResult) -> None:
        self._guard(f"logging round {result.round}", self._round, result)

    def on_run_end(self, summary: RunSummary) -> None:
        self._guard("finishing its run", self._end, summary)

    def _start(self, ctx: RunContext) -> None:
        raise NotImplementedError

    def _round(self, result: RoundResult) -> None:
        raise NotImplementedError

    def _end(self, summary: RunSummary) -> None:
        raise NotImplementedError

    def _abandon(self) -> None:
        """Close what ``_start`` opened, after a failure (best effort)."""
