"""The live per-round table on the console.

One row per round: overall accuracy and loss, then accuracy, loss and member count
of each cluster, then the round's time. Colour on a terminal, plain lines otherwise.
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ..records import RoundResult, RunContext, RunSummary
from .base import Callback

__all__ = ["ConsoleTable"]


def _f(x: float, width: int = 6, digits: int = 3) -> str:
    return f"{'-':>{width}}" if x is None or math.isnan(x) else f"{x:>{width}.{digits}f}"


class ConsoleTable(Callback):
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False)
        self.run_dir = None

    def on_run_start(self, ctx: RunContext) -> None:
        cfg, fed = ctx.config, ctx.federation
        self.run_dir = ctx.run_dir
        self.k = cfg.cluster.k_initial
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
        for i in range(k):
            head += f"│ {'c' + str(i) + ' acc':>7} {'loss':>6} {'n':>4} "
        self.console.print(f"[bold]{head}│ {'time':>6}[/]")
        self.k = k

    def on_round_end(self, result: RoundResult) -> None:
        if len(result.clusters) != self.k:  # CFL or auto-k changed the number of clusters
            self._header(len(result.clusters))
        row = f"{result.round:>5} {_f(result.accuracy)} {_f(result.loss)} "
        for c in result.clusters:
            row += f"│ {_f(c.accuracy, 7)} {_f(c.loss)} {len(c.members):>4} "
        self.console.print(f"{row}│ {result.seconds:>5.2f}s")

    def on_run_end(self, summary: RunSummary) -> None:
        final = summary.final
        if summary.error:
            self.console.print(f"[red]run failed after round {summary.round}:[/] "
                               f"{escape(summary.error)}")
        elif summary.reason not in ("completed", "early-stop"):  # a signal
            again = f": fedcluster run --resume {self.run_dir}" if self.run_dir else ""
            self.console.print(f"[yellow]stopped by {summary.reason}[/] after round "
                               f"{summary.round}; it can be resumed{again}")
        elif final is not None:
            how = "stopped early" if summary.stopped_early else "done"
            self.console.print(
                f"[bold green]{how}[/] after {final.round} rounds in {summary.seconds:.1f}s: "
                f"accuracy {_f(final.accuracy, 0)}, top-5 {_f(final.top5, 0)}, "
                f"loss {_f(final.loss, 0)}"
            )
        if self.run_dir is not None:
            report = ", report.html" if (Path(self.run_dir) / "report.html").exists() else ""
            self.console.print(f"results in [bold]{self.run_dir}[/] (metrics.jsonl, "
                               f"config.toml, models/, run.log{report})")
