"""``fedcluster compare``: finished runs side by side, read from their files (no rerun).

Runs whose saved configs are equal but for the seed (and the name, the ``[run]``
settings and the output sections) form one row: the mean ± sample standard deviation
(n - 1) over those runs of the final and the best accuracy and of the final ARI against
the true groups (where known), and the rounds each took to reach a target accuracy.
Rows are labelled by the keys in which their configs differ. ``compare.html`` holds the
table and the rows' accuracy curves (mean, with the range of the runs shaded), figures
embedded, self-contained.
"""

from __future__ import annotations

import base64
import html
import io
import json
import statistics
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError
from .resume import flat_keys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Group", "RunMetrics", "find_runs", "group_runs", "load_run", "mean_std",
           "print_comparison", "table_rows", "write_html"]

# Keys that do not change what a run computes, or that a comparison averages over.
_IGNORED = ("name", "seed", "plugins", "run", "plots", "tensorboard", "mlflow", "wandb",
            "notify")


@dataclass(frozen=True)
class RunMetrics:
    """One run as its files record it."""

    path: Path
    config: dict[str, Any]
    rounds: list[dict[str, Any]]
    summary: dict[str, Any] | None

    @property
    def accuracies(self) -> list[float]:
        return [r["accuracy"] for r in self.rounds if r.get("accuracy") is not None]

    @property
    def final_accuracy(self) -> float | None:
        final = (self.summary or {}).get("final")
        if final and final.get("accuracy") is not None:
            return float(final["accuracy"])
        acc = self.accuracies
        return acc[-1] if acc else None

    @property
    def best_accuracy(self) -> float | None:
        return max(self.accuracies, default=None)

    @property
    def final_ari(self) -> float | None:
        final = (self.summary or {}).get("final") or (self.rounds[-1] if self.rounds else {})
        ari = final.get("ari")
        return None if ari is None else float(ari)

    @property
    def final_personal(self) -> float | None:
        """Personalised algorithms: the last round's accuracy of the clients' own models."""
        acc = [r["personal_accuracy"] for r in self.rounds
               if r.get("personal_accuracy") is not None]
        return float(acc[-1]) if acc else None

    def rounds_to(self, target: float) -> int | None:
        """The first round whose accuracy reached ``target``; None if none did."""
        return next((r["round"] for r in self.rounds
                     if r.get("accuracy") is not None and r["accuracy"] >= target), None)


def _is_run(path: Path) -> bool:
    return (path / "metrics.jsonl").is_file() and (path / "config.toml").is_file()


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Each path as a run directory, or the run directories right below it (a sweep);
    a run named twice counts once."""
    out: dict[Path, Path] = {}
    for p in map(Path, paths):
        if _is_run(p):
            out.setdefault(p.resolve(), p)
            continue
        inside = sorted(d for d in p.iterdir() if d.is_dir() and _is_run(d)) if p.is_dir() else []
        if not inside:
            raise ConfigError(f"{p}: not a run directory (metrics.jsonl and config.toml) nor a "
                              "directory of runs")
        for d in inside:
            out.setdefault(d.resolve(), d)
    return list(out.values())


def load_run(path: Path) -> RunMetrics:
    """A run's saved config, its rounds (a torn last line skipped) and its summary."""
    config = tomllib.loads((path / "config.toml").read_text(encoding="utf-8"))
    rounds = []
    for line in (path / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            rounds.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    summary_file = path / "summary.json"
    summary = json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.is_file() \
        else None
    return RunMetrics(path, config, rounds, summary)


@dataclass(frozen=True)
class Group:
    """Runs that differ only in their seed (and settings that do not change results)."""

    label: str
    runs: list[RunMetrics]


def group_runs(runs: list[RunMetrics]) -> list[Group]:
    """Runs grouped by their configs less :data:`_IGNORED`, in the order first seen,
    labelled by the keys whose values differ between groups (or by the run name)."""
    keyed: dict[str, list[RunMetrics]] = {}
    flats: dict[str, dict[str, Any]] = {}
    for run in runs:
        flat = {k: v for k, v in flat_keys(run.config).items() if k.split(".")[0] not in _IGNORED}
        key = json.dumps(flat, sort_keys=True, default=str)
        keyed.setdefault(key, []).append(run)
        flats[key] = flat
    differing = sorted({k for f in flats.values() for k in f
                        if len({json.dumps(g.get(k), default=str) for g in flats.values()}) > 1})
    groups = []
    for key, members in keyed.items():
        # a key another group's config has and this one's lacks (a plugin's [data.params])
        # says nothing about this group
        label = ", ".join(f"{k}={flats[key][k]}" for k in differing
                          if flats[key].get(k) is not None)
        groups.append(Group(label or str(members[0].config.get("name", members[0].path.name)),
                            members))
    return groups


def mean_std(values: list[float]) -> str:
    """``mean ± std`` (sample standard deviation) over values, the mean alone for one,
    ``-`` for none."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def _known(values: list[float | int | None]) -> list[float]:
    return [float(v) for v in values if v is not None]


def table_rows(groups: list[Group], target: float) -> tuple[list[str], list[list[str]]]:
    """The comparison table: a header and one row per group."""
    head = ["runs", "n", "final acc", "best acc", f"rounds to {target:g}", "ARI"]
    personal = any(r.final_personal is not None for g in groups for r in g.runs)
    if personal:  # personalised algorithms compared: their own models' accuracy too
        head.insert(4, "personal acc")
    rows = []
    for g in groups:
        reached = _known([r.rounds_to(target) for r in g.runs])
        to_target = "-" if not reached else (
            f"{statistics.fmean(reached):.1f} ({len(reached)}/{len(g.runs)})")
        row = [g.label, str(len(g.runs)),
               mean_std(_known([r.final_accuracy for r in g.runs])),
               mean_std(_known([r.best_accuracy for r in g.runs])), to_target,
               mean_std(_known([r.final_ari for r in g.runs]))]
        if personal:
            row.insert(4, mean_std(_known([r.final_personal for r in g.runs])))
        rows.append(row)
    return head, rows


def _curves_png(groups: list[Group]) -> bytes:
    """Accuracy per round: each group's mean over its runs, the runs' range shaded."""
    from .plots.style import colors, integer_axis, new_figure

    fig = new_figure(9.0, 4.8)
    ax = fig.add_subplot()
    for group, color in zip(groups, colors(len(groups)), strict=True):
        by_round: dict[int, list[float]] = {}
        for run in group.runs:
            for r in run.rounds:
                if r.get("accuracy") is not None:
                    by_round.setdefault(r["round"], []).append(r["accuracy"])
        xs = sorted(by_round)
        ax.plot(xs, [statistics.fmean(by_round[x]) for x in xs], color=color,
                label=textwrap.fill(f"{group.label} (n={len(group.runs)})", 70))
        if len(group.runs) > 1:
            ax.fill_between(xs, [min(by_round[x]) for x in xs], [max(by_round[x]) for x in xs],
                            color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy (all clients' eval sets)")
    integer_axis(ax.xaxis)
    ax.grid(alpha=0.3)
    # below the axes, so long labels widen the figure instead of covering the curves
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(0.0, -0.15))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def write_html(path: Path, groups: list[Group], target: float) -> Path:
    """``compare.html``: the table, the curves (base64 PNG) and the runs compared."""
    from .plots.report import CSS, _table

    head, rows = table_rows(groups, target)
    png = base64.b64encode(_curves_png(groups)).decode("ascii")
    runs = "".join(f"<li>{html.escape(g.label)}: "
                   + ", ".join(html.escape(str(r.path)) for r in g.runs) + "</li>"
                   for g in groups)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>fedcluster compare"
            f"</title><style>{CSS}</style></head><body><h1>fedcluster compare</h1>"
            f"<p>Mean ± sample standard deviation over each row's runs (seeds).</p>"
            + _table(head, [[html.escape(c) for c in row] for row in rows])
            + f"<figure><img alt='accuracy per round' src='data:image/png;base64,{png}'>"
              "<figcaption>Accuracy per round: mean over the runs, their range shaded"
              "</figcaption></figure>"
            + f"<h2>Runs</h2><ul>{runs}</ul></body></html>")
    from .rundir import atomic_write

    atomic_write(path, page)
    return path


def print_comparison(paths: list[str], html_path: Path, target: float) -> None:
    """The comparison table on the console, and ``compare.html`` written at ``html_path``."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    groups = group_runs([load_run(p) for p in find_runs(paths)])
    head, rows = table_rows(groups, target)
    table = Table(title=f"{sum(len(g.runs) for g in groups)} runs: mean ± std over seeds",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    widest = max(len(row[0]) for row in rows)
    for i, h in enumerate(head):
        table.add_column(h, justify="left" if i == 0 else "right", overflow="fold",
                         no_wrap=i > 0, min_width=min(widest, 24) if i == 0 else None)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    print(f"compare: {write_html(html_path, groups, target)}")
