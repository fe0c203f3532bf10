"""Callbacks: everything that reports on a run. Each is one file and can be left out."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from rich.console import Console

from ..config import Config
from .base import Callback, CallbackList
from .console import ConsoleTable
from .figures import Figures
from .mlflow_tracker import MlflowTracker
from .model_files import ModelSaver
from .notifications import Notify, notifiers_from_config
from .progress import Progress
from .run_files import RunFiles
from .tensorboard import TensorBoard
from .tracker import Tracker
from .wandb_tracker import WandbTracker

__all__ = [
    "Callback",
    "CallbackList",
    "ConsoleTable",
    "Figures",
    "MlflowTracker",
    "ModelSaver",
    "Notify",
    "Progress",
    "RunFiles",
    "TensorBoard",
    "Tracker",
    "WandbTracker",
    "default_callbacks",
]


def default_callbacks(cfg: Config, run_dir: Path | None, console: Console | None = None,
                      quiet: bool = False,
                      progress: Literal["auto", "bar", "lines", "off"] = "auto"
                      ) -> list[Callback]:
    """The standard set: run files, models, figures and TensorBoard (when a run directory
    is given and the config turns them on), the console table and progress unless
    ``quiet``, notifications when configured, and the MLflow and W&B trackers when
    enabled (last: at run end they find the models and report written). (Early stop is
    the loop's.)

    Raises ConfigError (with an install hint) when a configured extra is missing.
    """
    console = console or Console(highlight=False)
    cbs: list[Callback] = []
    if run_dir is not None:
        cbs += [RunFiles(run_dir), ModelSaver(run_dir)]
        if cfg.plots.enabled:
            cbs.append(Figures(run_dir, cfg.plots))
        if cfg.tensorboard.enabled:
            cbs.append(TensorBoard(Path(run_dir) / "tensorboard"))
    if not quiet:
        cbs.append(ConsoleTable(console))
        if progress != "off":
            cbs.append(Progress(console, progress))
    channels = notifiers_from_config(cfg.notify)
    if channels:
        cbs.append(Notify(channels, cfg.notify.secrets()))
    if cfg.mlflow.enabled:
        cbs.append(MlflowTracker(cfg.mlflow))
    if cfg.wandb.enabled:
        cbs.append(WandbTracker(cfg.wandb))
    return cbs
