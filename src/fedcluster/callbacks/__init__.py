"""Callbacks: everything that reports on a run. Each is one file and can be left out."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ..config import Config
from .base import Callback, CallbackList
from .console import ConsoleTable
from .early_stop import EarlyStop
from .files import RunFiles
from .models import ModelSaver

__all__ = [
    "Callback",
    "CallbackList",
    "ConsoleTable",
    "EarlyStop",
    "ModelSaver",
    "RunFiles",
    "default_callbacks",
]


def default_callbacks(cfg: Config, run_dir: Path | None, console: Console | None = None,
                      quiet: bool = False) -> list[Callback]:
    """The standard set: run files and models (when a run directory is given), early stop,
    and the console table unless ``quiet``."""
    cbs: list[Callback] = []
    if run_dir is not None:
        cbs += [RunFiles(run_dir), ModelSaver(run_dir)]
    cbs.append(EarlyStop(cfg.stop))
    if not quiet:
        cbs.append(ConsoleTable(console))
    return cbs
