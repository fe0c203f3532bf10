"""Draws the run's figures (``figures/*.png``) and ``report.html`` when the run ends,
also after a failure, from the run directory's files (see :mod:`fedcluster.plots`)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import PlotsConfig
from ..records import RunSummary
from .base import Callback

__all__ = ["Figures"]

log = logging.getLogger(__name__)


class Figures(Callback):
    def __init__(self, run_dir: Path, cfg: PlotsConfig) -> None:
        self.run_dir = Path(run_dir)
        self.cfg = cfg

    def on_run_end(self, summary: RunSummary) -> None:
        from ..plots import draw_figures, write_report  # matplotlib only when drawing

        files = draw_figures(self.run_dir, self.cfg.every)
        if self.cfg.report:
            write_report(self.run_dir, files)
        log.info("%d figures in %s", len(files), self.run_dir / "figures")
