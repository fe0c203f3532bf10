"""The texts of notifications: run started, round summary, final results, failure.

Plain text (no Markdown or HTML, so nothing can fail to parse), short lines that
read well on a phone; ``data`` repeats the numbers for webhook consumers.
"""

from __future__ import annotations

import math

from ..fl.privacy import describe
from ..records import RoundResult, RunContext, RunSummary
from .base import Message

__all__ = ["end_message", "round_message", "start_message"]


def _f(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.4f}"


def start_message(ctx: RunContext) -> Message:
    cfg = ctx.config
    part = cfg.data.partition + (f" alpha={cfg.data.alpha}" if cfg.data.partition == "dirichlet"
                                 else "")
    c = cfg.client
    lines = [
        f"fedcluster: run {cfg.name} started",
        f"data: {cfg.data.dataset}, {ctx.federation.num_clients} clients ({part}), "
        f"{cfg.clients_per_round} per round",
        f"model: {cfg.model.name} ({ctx.model.numel:,} parameters) on {ctx.device}",
        f"clustering: k={cfg.cluster.k} ({cfg.cluster.method}), {cfg.rounds} rounds, "
        f"server lr {cfg.server.lr:g}",
        f"clients: {c.optimizer} lr {c.lr:g}, batch {c.batch_size}, "
        f"{c.local_epochs} local epoch(s)",
        f"seed {cfg.seed}",
    ]
    if ctx.run_dir is not None:
        lines.append(f"run directory: {ctx.run_dir}")
    data = {"run": cfg.name, "rounds": cfg.rounds, "k": cfg.cluster.k,
            "clients": ctx.federation.num_clients, "dataset": cfg.data.dataset,
            "model": cfg.model.name}
    return Message("start", "\n".join(lines), data)


def _round_lines(r: RoundResult) -> list[str]:
    lines = [f"accuracy {_f(r.accuracy)}, top-5 {_f(r.top5)}, loss {_f(r.loss)}"]
    if r.ari is not None or r.nmi is not None:  # the true groups are known
        lines.append(f"clusters vs true groups: ARI {_f(r.ari)}, NMI {_f(r.nmi)}")
    lines += [f"  cluster {c.id}: accuracy {_f(c.accuracy)}, loss {_f(c.loss)}, "
              f"{len(c.members)} clients" for c in r.clusters]
    if r.privacy is not None:  # [privacy]: the epsilon spent so far
        lines.append(describe(r.privacy))
    return lines


def _round_data(r: RoundResult) -> dict[str, object]:
    return {"round": r.round, "accuracy": _num(r.accuracy), "top5": _num(r.top5),
            "loss": _num(r.loss), "seconds": round(r.seconds, 3),
            "ari": _num(r.ari), "nmi": _num(r.nmi),
            "clusters": [{"id": c.id, "size": len(c.members), "accuracy": _num(c.accuracy),
                          "loss": _num(c.loss)} for c in r.clusters],
            **({"privacy": r.privacy} if r.privacy is not None else {})}


def _num(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def round_message(name: str, result: RoundResult, rounds: int) -> Message:
    head = f"{name} round {result.round}/{rounds} ({result.seconds:.1f}s)"
    data = {"run": name, **_round_data(result)}
    return Message("round", "\n".join([head, *_round_lines(result)]), data)


def end_message(summary: RunSummary) -> Message:
    name = summary.context.config.name
    final = summary.final
    if summary.error:
        text = (f"{name} FAILED after {summary.round} round(s), {summary.seconds:.1f}s:\n"
                f"{summary.error}")
        return Message("error", text, {"run": name, "rounds": summary.round,
                                       "error": summary.error})
    how = {"completed": "finished", "early-stop": "stopped early"}.get(
        summary.reason, f"stopped by {summary.reason}")
    lines = [f"{name} {how} after {summary.round} round(s) in {summary.seconds:.1f}s"]
    if final is not None:
        lines += _round_lines(final)
    data = {"run": name, "rounds": summary.round, "seconds": round(summary.seconds, 3),
            "stopped_early": summary.stopped_early, "reason": summary.reason,
            "final": _round_data(final) if final is not None else None}
    return Message("end", "\n".join(lines), data)
