"""Progress of long work: rounds, and clients within the round, with time left.

On a terminal: two rich progress bars (rounds, clients of this round) with
elapsed time and ETA, kept below the console table. Otherwise (CI, log files):
plain lines, at most one every ``interval`` seconds, so short runs stay quiet
and long rounds still show they are alive.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from ..fl.client import Update
from ..records import RoundResult, RunContext, RunSummary
from .base import Callback

__all__ = ["Progress", "eta_seconds", "format_seconds"]


def eta_seconds(done: float, total: float, elapsed: float) -> float | None:
    """Seconds left at the pace so far; None before anything is done."""
    if done <= 0 or elapsed <= 0:
        return None
    return max(0.0, elapsed / done * (total - done))


def format_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


class Progress(Callback):
    """``mode``: "bar" (rich), "lines" (plain) or "auto" (bar on a terminal)."""

    def __init__(self, console: Console | None = None,
                 mode: Literal["auto", "bar", "lines"] = "auto", interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console or Console(highlight=False)
        if mode == "auto":
            mode = "bar" if self.console.is_terminal else "lines"
        self.mode, self.interval, self.clock = mode, interval, clock
        self.bars: RichProgress | None = None
        self.total = self.round = self.clients = self.done = 0
        self.t_run = self.t_round = self.last_line = 0.0

    def on_run_start(self, ctx: RunContext) -> None:
        self.total = ctx.config.rounds
        self.t_run = self.last_line = self.clock()
        if self.mode == "bar":
            self.bars = RichProgress(
                TextColumn("{task.description:>8}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("left"),
                TimeRemainingColumn(), console=self.console, transient=True)
            self.bars.add_task("rounds", total=self.total, completed=ctx.start_round)
            self.bars.add_task("clients", total=1)
            self.bars.start()

    def on_round_start(self, round_: int, clients: Sequence[int]) -> None:
        self.round, self.clients, self.done = round_, len(clients), 0
        self.t_round = self.clock()
        if self.bars is not None:
            self.bars.reset(self.bars.task_ids[1], total=self.clients,
                            description=f"round {round_}")

    def on_client_done(self, round_: int, update: Update) -> None:
        self.done += 1
        if self.bars is not None:
            self.bars.advance(self.bars.task_ids[1])
            return
        now = self.clock()
        if now - self.last_line >= self.interval:
            left = eta_seconds(self.done, self.clients, now - self.t_round)
            self._line(f"round {self.round}/{self.total}: {self.done}/{self.clients} clients, "
                       f"round ends in ~{format_seconds(left)}", now)

    def on_round_end(self, result: RoundResult) -> None:
        if self.bars is not None:
            self.bars.advance(self.bars.task_ids[0])
            return
        now = self.clock()
        if now - self.last_line >= self.interval:
            left = eta_seconds(result.round, self.total, now - self.t_run)
            self._line(f"round {result.round}/{self.total} done, "
                       f"elapsed {format_seconds(now - self.t_run)}, "
                       f"left ~{format_seconds(left)}", now)

    def on_run_end(self, summary: RunSummary) -> None:
        if self.bars is not None:
            self.bars.stop()
            self.bars = None

    def _line(self, text: str, now: float) -> None:
        self.last_line = now
        self.console.print(text, markup=False, highlight=False)
