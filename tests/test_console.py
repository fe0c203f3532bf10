"""The console table: ARI/NMI columns where the true groups are known, and folding that
keeps every line within 80 columns with the columns of header and rows aligned."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
from rich.console import Console

from fedcluster.callbacks.console import ConsoleTable, fold
from fedcluster.config import load_config
from fedcluster.records import ClientResult, ClusterResult, RoundResult


def _table(groups: list[int], k: int) -> tuple[ConsoleTable, io.StringIO]:
    out = io.StringIO()
    table = ConsoleTable(Console(file=out, width=300, highlight=False))
    cfg = load_config(None, [f"cluster.k={k}", f"data.num_clients={len(groups)}"], environ={})
    ctx = SimpleNamespace(config=cfg, run_dir=None, device="cpu",
                          federation=SimpleNamespace(num_clients=len(groups),
                                                     groups=np.array(groups)),
                          model=SimpleNamespace(numel=1234))
    table.on_run_start(ctx)
    return table, out


def _result(r: int, k: int, ari: float | None, nmi: float | None) -> RoundResult:
    clusters = [ClusterResult(i, list(range(i, 3 * k, k)), 0.5 + 0.01 * i, 0.9, 1.0 + i, 10)
                for i in range(k)]
    clients = [ClientResult(0, 0, 0.5, 10, 1)]
    return RoundResult(r, 0.625, 0.9, 0.75, clusters, clients, 1.25, ari=ari, nmi=nmi)


def test_fold_keeps_lines_within_the_width() -> None:
    assert fold("ab ", ["c1 ", "c2 "], "| t ", width=80) == ["ab c1 c2 | t"]
    # 30 + 7 + 22 = 59 columns, another cell would make 81: fold, 6 + 3 x 22 = 72 after
    assert fold("p" * 30, ["x" * 22] * 4, "| time ", width=80) == [
        "p" * 30 + "| time " + "x" * 22, " " * 6 + "x" * 66]


@pytest.mark.parametrize("k", [1, 2, 3, 4, 7, 12])
def test_ari_and_nmi_columns_with_known_groups(k: int) -> None:
    table, out = _table(np.repeat(np.arange(4), 4).tolist(), k)
    table.on_round_end(_result(1, k, 0.4321, 0.8766))
    table.on_round_end(_result(2, k, None, None))
    text = out.getvalue().splitlines()[1:]  # after the run's one-line summary
    assert all(len(line) <= 80 for line in text), max(map(len, text))
    head = text[0]
    assert head.split()[:5] == ["round", "acc", "loss", "ARI", "NMI"]
    n = len(text) // 3  # header, round 1, round 2 fold alike
    first, second = text[n], text[2 * n]
    assert first.split()[:5] == ["1", "0.625", "0.750", "0.432", "0.877"]
    assert second.split()[:5] == ["2", "0.625", "0.750", "-", "-"]
    # every cluster's numbers appear, in order, each under its header cell
    header_cells = [c for line in text[:n] for c in line.split("│")[1:]]
    row_cells = [c for line in text[n:2 * n] for c in line.split("│")[1:]]
    assert len(header_cells) == len(row_cells) == k + 1
    for i in range(k):
        h = next(c for c in header_cells if c.strip().startswith(f"c{i} acc"))
        cell = row_cells[header_cells.index(h)]
        assert cell.split() == [f"{0.5 + 0.01 * i:.3f}", f"{1.0 + i:.3f}", "3"]
    for line_h, line_r in zip(text[:n], text[n:2 * n], strict=True):
        assert [i for i, ch in enumerate(line_h) if ch == "│"] == \
            [i for i, ch in enumerate(line_r) if ch == "│"]  # columns aligned


def test_no_truth_columns_without_groups() -> None:
    table, out = _table([0] * 6, 2)
    table.on_round_end(_result(1, 2, None, None))
    lines = out.getvalue().splitlines()[1:]
    assert "ARI" not in lines[0] and len(lines) == 2  # k = 2 still fits on one line
    assert lines[1].split()[:3] == ["1", "0.625", "0.750"]
