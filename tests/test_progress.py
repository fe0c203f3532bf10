"""Progress: plain lines with ETA off a terminal, rich bars on one, nothing when quiet."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from fedcluster.callbacks import Progress, default_callbacks
from fedcluster.callbacks.console import ConsoleTable
from fedcluster.callbacks.progress import eta_seconds, format_seconds
from fedcluster.config import load_config


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _ctx(rounds: int) -> SimpleNamespace:
    return SimpleNamespace(config=SimpleNamespace(rounds=rounds), start_round=0)


def _drive(progress: Progress, clock: Clock, rounds: int, clients: int, step: float) -> None:
    progress.on_run_start(_ctx(rounds))  # type: ignore[arg-type]
    for r in range(1, rounds + 1):
        progress.on_round_start(r, list(range(clients)))
        for _ in range(clients):
            clock.now += step
            progress.on_client_done(r, None)  # type: ignore[arg-type]
        progress.on_round_end(SimpleNamespace(round=r))  # type: ignore[arg-type]
    progress.on_run_end(None)  # type: ignore[arg-type]


def test_eta_and_format() -> None:
    assert eta_seconds(0, 10, 5.0) is None
    assert eta_seconds(2, 10, 4.0) == pytest.approx(16.0)
    assert eta_seconds(10, 10, 4.0) == 0.0
    assert [format_seconds(s) for s in (None, 7, 125, 7322)] == ["?", "7s", "2m05s", "2h02m"]


def test_plain_lines_with_eta_at_most_every_interval() -> None:
    out = io.StringIO()
    clock = Clock()
    progress = Progress(Console(file=out, force_terminal=False), "auto", interval=10.0,
                        clock=clock)
    assert progress.mode == "lines"
    _drive(progress, clock, rounds=3, clients=4, step=4.0)  # 16 s per round
    lines = out.getvalue().splitlines()
    assert lines == [  # one line once 10 s have passed since the last one
        "round 1/3: 3/4 clients, round ends in ~4s",  # at 12 s
        "round 2/3: 2/4 clients, round ends in ~8s",  # at 24 s
        "round 3/3: 1/4 clients, round ends in ~12s",  # at 36 s
        "round 3/3: 4/4 clients, round ends in ~0s",  # at 48 s
    ]


def test_round_lines_report_time_left_for_the_run() -> None:
    out = io.StringIO()
    clock = Clock()
    progress = Progress(Console(file=out, force_terminal=False), "lines", interval=0.0,
                        clock=clock)
    progress.on_run_start(_ctx(4))  # type: ignore[arg-type]
    progress.on_round_start(1, [0, 1])
    clock.now = 30.0
    progress.on_round_end(SimpleNamespace(round=1))  # type: ignore[arg-type]
    assert out.getvalue().strip() == "round 1/4 done, elapsed 30s, left ~1m30s"


def test_bars_on_a_terminal_count_rounds_and_clients() -> None:
    out = io.StringIO()
    clock = Clock()
    progress = Progress(Console(file=out, force_terminal=True, width=100), "auto", clock=clock)
    assert progress.mode == "bar"
    progress.on_run_start(_ctx(3))  # type: ignore[arg-type]
    bars = progress.bars
    progress.on_round_start(1, [0, 1, 2])
    progress.on_client_done(1, None)  # type: ignore[arg-type]
    rounds, clients = bars.tasks
    assert (clients.completed, clients.total, clients.description) == (1, 3, "round 1")
    progress.on_client_done(1, None)  # type: ignore[arg-type]
    progress.on_client_done(1, None)  # type: ignore[arg-type]
    progress.on_round_end(SimpleNamespace(round=1))  # type: ignore[arg-type]
    assert (rounds.completed, rounds.total, clients.completed) == (1, 3, 3)
    progress.on_run_end(None)  # type: ignore[arg-type]
    assert progress.bars is None and not bars.live.is_started


def test_quiet_and_progress_flags_choose_callbacks() -> None:
    cfg = load_config(None, environ={})
    kinds = [type(c) for c in default_callbacks(cfg, None)]
    assert ConsoleTable in kinds and Progress in kinds
    assert Progress not in [type(c) for c in default_callbacks(cfg, None, progress="off")]
    quiet = [type(c) for c in default_callbacks(cfg, None, quiet=True)]
    assert ConsoleTable not in quiet and Progress not in quiet


def test_console_table_reprints_its_header_when_clusters_are_added():
    import io

    from rich.console import Console

    from fedcluster.records import ClusterResult, RoundResult

    out = io.StringIO()
    table = ConsoleTable(Console(file=out, width=200))
    table._header(2)

    def result(r, k):
        clusters = [ClusterResult(i, [i], 0.5, 0.9, 1.0, 10) for i in range(k)]
        return RoundResult(r, 0.5, 0.9, 1.0, clusters, [], 0.1)

    table.on_round_end(result(1, 2))
    table.on_round_end(result(2, 3))  # CFL split a cluster
    table.on_round_end(result(3, 3))
    lines = out.getvalue().splitlines()
    headers = [i for i, line in enumerate(lines) if line.lstrip().startswith("round")]
    assert headers == [0, 2]
    # three clusters do not fit in 80 columns: the header and each row fold onto a 2nd line
    assert "c2 acc" in lines[3] and "c2 acc" not in lines[0] + lines[1]
    assert lines[4].count("│") == lines[2].count("│") == 3 and lines[5].count("│") == 1
    assert max(map(len, lines)) <= 80
