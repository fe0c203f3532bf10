"""``report.html``: one self-contained page (figures embedded as base64 PNG, the config,
the final table, the true group x cluster table where groups are known, every round's
numbers) that opens in any browser without a server.

Each part is built on its own: one that fails becomes a note in its place, and figures
that could not be drawn (``figures/failed.json``) are noted too.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..fl.privacy import describe
from .record import RunRecord, load_record
from .truth import confusion

__all__ = ["FAILED", "write_report"]

FAILED = "failed.json"  # in figures/: {figure file: error} of the figures not drawn

log = logging.getLogger(__name__)

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
    spent = f"<p>{html.escape(describe(last['privacy']))}</p>" if last.get("privacy") else ""
    return (f"<h2>Final results (round {last['round']})</h2>"
            + _table(["cluster", "clients", "accuracy", "top-5", "loss"], rows) + spent)


def _rounds_table(record: RunRecord) -> str:
    head = ["round", "accuracy", "top-5", "loss", "client acc. mean", "p10", "min"]
    keys = ["accuracy", "top5", "loss", "client_accuracy_mean", "client_accuracy_p10",
            "client_accuracy_min"]
    if record.groups is not None:
        head, keys = head + ["ARI", "NMI"], keys + ["ari", "nmi"]
    if any(r.get("privacy") for r in record.rounds):  # epsilon spent by the end of the round
        head.append("ε")
        keys.append("epsilon")
    changed = any(r.get("changed") is not None for r in record.rounds)
    faults = any(r.get("rejected") or r.get("attackers") or r.get("skipped")
                 for r in record.rounds)
    rows = []
    for r in record.rounds:
        row = [str(r["round"]), *(_f(r.get(key, (r.get("privacy") or {}).get(key)))
                                  for key in keys)]
        if changed:
            row.append(_f(r.get("changed")))
        if faults:
            row.append(_left_out(r))
        row += [" / ".join(str(c.get("size", len(c["members"]))) for c in r["clusters"]),
                _f(r.get("seconds"), 2)]
        rows.append(row)
    return "<h2>Rounds</h2>" + _table(
        head + (["changed cluster"] if changed else []) + (["left out"] if faults else [])
        + ["cluster sizes", "seconds"], rows)


def _left_out(r: dict[str, Any]) -> str:
    """How many updates the server left out (why, on hover), how many of the sampled
    attackers it kept, and whether the round made no model step."""
    rejected, attackers = r.get("rejected") or {}, r.get("attackers") or []
    text = str(len(rejected))
    if attackers:
        text += f" (attackers kept {len(r.get('attackers_kept') or [])}/{len(attackers)})"
    if r.get("skipped"):
        text += ", no step"
    why = "; ".join(f"client {c}: {w}" for c, w in rejected.items())
    return f"<span title=\"{html.escape(why)}\">{text}</span>" if why else text


def _confusion_table(record: RunRecord) -> str:
    """True group x cluster after the last round (only where the true groups are known)."""
    groups = record.groups
    if groups is None or not record.rounds:
        return ""
    table, columns = confusion(groups, record.assignment(-1))
    last = record.rounds[-1]
    head = ["true group", *(f"cluster {c}" if c >= 0 else "not assigned" for c in columns),
            "clients"]
    rows = [[f"group {g}", *(str(int(v)) for v in table[g]), str(int(table[g].sum()))]
            for g in range(len(table))]
    scores = ", ".join(f"{name} {_f(last.get(key), 3)}" for name, key in
                       (("ARI", "ari"), ("NMI", "nmi")) if last.get(key) is not None)
    return (f"<h2>True group &times; cluster (round {last['round']})</h2>"
            f"<p>Clients of each true group (rows) in each cluster (columns)"
            f"{'; ' + scores if scores else ''}.</p>" + _table(head, rows))


def _failed_figures(run_dir: Path) -> str:
    path = run_dir / "figures" / FAILED
    if not path.is_file():
        return ""
    try:
        failed = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return ""
    return "".join(f"<p class='err'>Figure {html.escape(str(name))} could not be drawn: "
                   f"{html.escape(str(err))}</p>" for name, err in failed.items())


def _part(name: str, build: Callable[[], str]) -> str:
    """One part of the page; a part that fails is a note, never a missing report."""
    try:
        return build()
    except Exception as e:  # noqa: BLE001 - the rest of the report still gets written
        log.warning("report: the %s could not be written (%s: %s)", name, type(e).__name__, e)
        return (f"<p class='err'>The {html.escape(name)} could not be written: "
                f"{html.escape(type(e).__name__)}: {html.escape(str(e))}</p>")


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
        _part("status", lambda: _status(record)),
        _part("final table", lambda: _final_table(record)),
        _part("true group x cluster table", lambda: _confusion_table(record)),
        "<h2>Figures</h2>",
        _failed_figures(run_dir),
        *(_part(f"figure {p.name}", lambda p=p: _figure(p)) for p in figures),
        _part("rounds table", lambda: _rounds_table(record)),
        "<h2>Config</h2>",
        f"<pre>{html.escape(record.config_text or '(no config.toml)')}</pre>",
        "</body></html>",
    ]
    out = run_dir / "report.html"
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
