"""The live per-round table on the console.

One row per round: overall accuracy and loss, where the true groups are known
(``data.groups > 1``) the ARI and NMI of the clustering against them, then accuracy, loss
and member count of each cluster, then the round's time. A row wider than 80 columns is
folded: the time moves up beside the overall numbers and the clusters continue on
indented lines (the header folds the same way, so columns stay aligned). Colour on a
terminal, plain lines otherwise.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape

from ..fl.privacy import describe
from ..records import RoundResult, RunContext, RunSummary
from .base import Callback

__all__ = ["ConsoleTable", "fold"]


WIDTH = 80  # columns the table keeps within
INDENT = 6  # of the folded lines


def _f(x: float | None, width: int = 6, digits: int = 3) -> str:
    return f"{'-':>{width}}" if x is None or math.isnan(x) else f"{x:>{width}.{digits}f}"


def fold(prefix: str, cells: list[str], end: str, width: int = WIDTH) -> list[str]:
    """``prefix + cells + end`` on one line when it fits in ``width``; otherwise
    ``prefix + end`` and then the cells, as many per line as fit, on lines indented by
    :data:`INDENT`. Lines made of cells of equal widths fold at the same places."""
    if len(prefix) + sum(map(len, cells)) + len(end) <= width:
        return [(prefix + "".join(cells) + end).rstrip()]
    lines, line = [], prefix + end
    for cell in cells:
        if len(line) + len(cell) > width and line.strip():
            lines.append(line.rstrip())
            line = " " * INDENT
        line += cell
    return [*lines, line.rstrip()]


class ConsoleTable(Callback):
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False)
        self.run_dir = None
        self.truth = False  # true groups known: ARI/NMI columns (set at run start)

    def on_run_start(self, ctx: RunContext) -> None:
        cfg, fed = ctx.config, ctx.federation
        self.run_dir = ctx.run_dir
        self.k = cfg.cluster.k_initial
        self.truth = len(np.unique(fed.groups)) > 1  # ARI/NMI columns
        part = cfg.data.partition + (f" α={cfg.data.alpha}" if cfg.data.partition == "dirichlet"
                                     else "")
        self.console.print(
            f"[bold]{cfg.name}[/]: {cfg.data.dataset}, {fed.num_clients} clients ({part}), "
            f"{cfg.clients_per_round} per round, k={self.k}, {cfg.rounds} rounds, "
            f"{cfg.model.name} ({ctx.model.numel:,} parameters) on {ctx.device}"
        )
        self._header(self.k)

    def _header(self, k: int) -> None:
        head = f"{'round':>5} {'acc':>6} {'loss':>6} "
        if self.truth:
            head += f"{'ARI':>6} {'NMI':>6} "
        cells = [f"│ {'c' + str(i) + ' acc':>7} {'loss':>6} {'n':>4} " for i in range(k)]
        for line in fold(head, cells, f"│ {'time':>6} "):
            self.console.print(f"[bold]{line}[/]")
        self.k = k

    def on_round_end(self, result: RoundResult) -> None:
        if len(result.clusters) != self.k:  # CFL or auto-k changed the number of clusters
            self._header(len(result.clusters))
        row = f"{result.round:>5} {_f(result.accuracy)} {_f(result.loss)} "
        if self.truth:
            row += f"{_f(result.ari)} {_f(result.nmi)} "
        cells = [f"│ {_f(c.accuracy, 7)} {_f(c.loss)} {len(c.members):>4} "
                 for c in result.clusters]
        for line in fold(row, cells, f"│ {result.seconds:>5.2f}s "):
            self.console.print(line)

    def on_run_end(self, summary: RunSummary) -> None:
        final = summary.final
        if summary.error:
            self.console.print(f"[red]run failed after round {summary.round}:[/] "
                               f"{escape(summary.error)}")
        elif summary.reason not in ("completed", "early-stop"):  # a signal
            again = f": fedcluster run --resume {escape(str(self.run_dir))}" if self.run_dir else ""
            self.console.print(f"[yellow]stopped by {summary.reason}[/] after round "
                               f"{summary.round}; it can be resumed{again}")
        elif final is not None:
            how = "stopped early" if summary.stopped_early else "done"
            self.console.print(
                f"[bold green]{how}[/] after {final.round} rounds in {summary.seconds:.1f}s: "
                f"accuracy {_f(final.accuracy, 0)}, top-5 {_f(final.top5, 0)}, "
                f"loss {_f(final.loss, 0)}"
            )
        if final is not None and final.privacy is not None:
            self.console.print(describe(final.privacy))
        if self.run_dir is not None:
            report = ", report.html" if (Path(self.run_dir) / "report.html").exists() else ""
            self.console.print(f"results in [bold]{escape(str(self.run_dir))}[/] (metrics.jsonl, "
                               f"config.toml, models/, run.log{report})")
