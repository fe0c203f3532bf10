"""``report.html``: one self-contained page (figures embedded as base64 PNG, the config,
the final table) that opens in any browser without a server."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from .record import RunRecord, load_record

__all__ = ["write_report"]

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}pre{background:#f7f7f7;padding:1em;overflow:auto}
figure{margin:1.5em 0}img{max-width:100%;border:1px solid #eee}.err{color:#b00}"""


def _f(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else html.escape(str(x))


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _status(record: RunRecord) -> str:
    s = record.summary
    n = len(record.rounds)
    if s is None:
        return f"<p>Running (or stopped without a summary): {n} round(s) recorded.</p>"
    if s.get("error"):
        return (f"<p class='err'>Failed after {n} round(s): {html.escape(str(s['error']))}"
                "</p>")
    how = "stopped early" if s.get("stopped_early") else "finished"
    return f"<p>{how.capitalize()} after {n} round(s) in {_f(s.get('seconds'), 1)} s.</p>"


def _final_table(record: RunRecord) -> str:
    if not record.rounds:
        return "<p>No round finished yet.</p>"
    last = record.rounds[-1]
    rows = [[str(c["id"]), str(c.get("size", len(c["members"]))), _f(c.get("accuracy")),
             _f(c.get("top5")), _f(c.get("loss"))] for c in last["clusters"]]
    rows.append(["<b>all</b>", str(sum(len(c["members"]) for c in last["clusters"])),
                 _f(last.get("accuracy")), _f(last.get("top5")), _f(last.get("loss"))])
    return (f"<h2>Final results (round {last['round']})</h2>"
            + _table(["cluster", "clients", "accuracy", "top-5", "loss"], rows))


def _rounds_table(record: RunRecord) -> str:
    rows = [[str(r["round"]), _f(r.get("accuracy")), _f(r.get("top5")), _f(r.get("loss")),
             " / ".join(str(c.get("size", len(c["members"]))) for c in r["clusters"]),
             _f(r.get("seconds"), 2)] for r in record.rounds]
    return "<h2>Rounds</h2>" + _table(
        ["round", "accuracy", "top-5", "loss", "cluster sizes", "seconds"], rows)


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = html.escape(path.stem)
    return (f"<figure><img alt='{name}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{name}</figcaption></figure>")


def write_report(run_dir: str | Path, figures: list[Path] | None = None) -> Path:
    """Write ``run_dir/report.html`` with ``figures`` (default: all in ``figures/``)."""
    run_dir = Path(run_dir)
    record = load_record(run_dir)
    if figures is None:
        figures = sorted((run_dir / "figures").glob("*.png"))
    title = html.escape(f"fedcluster report: {record.name}")
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{CSS}</style></head><body><h1>{title}</h1>",
        f"<p>Run directory: <code>{html.escape(str(run_dir.resolve()))}</code></p>",
        _status(record),
        _final_table(record),
        "<h2>Figures</h2>",
        *(_figure(p) for p in figures),
        _rounds_table(record),
        "<h2>Config</h2>",
        f"<pre>{html.escape(record.config_text or '(no config.toml)')}</pre>",
        "</body></html>",
    ]
    out = run_dir / "report.html"
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
