"""SCAFFOLD against FedAvg under client drift: rounds to a target accuracy on digits shards.

    python benchmarks/scaffold.py [--rounds 30] [--seeds 0 1 2] [--lrs 0.02 0.05]
        [--epochs 5] [--targets 0.85 0.9 0.95] [--jobs 1] [--out runs.jsonl] [key=value ...]
    python benchmarks/scaffold.py --table-from runs.jsonl [--targets 0.85 0.9 0.95]

Karimireddy et al. (ICML 2020) show SCAFFOLD's advantage where client drift is large:
dissimilar clients and many local steps. So: 20 clients holding 2 label shards each
(``data.partition = "shards"``, about 2 classes a client), all in every round, batch 10,
``--epochs`` local epochs (5: about 36 local steps a round), plain SGD at each of
``--lrs`` (the same rate for both algorithms), ``cluster.k = 1``, server step 1. For each
run: the first round whose accuracy (pooled over the clients' eval sets) reaches each
target ("–" when it never does), the best and the final accuracy, and whether any
client update was non-finite. Prints a Markdown table (per-seed rounds, then mean
accuracies; runs with other ``key=value`` overrides in rows of their own) and, with
``--out``, one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor

from personalisation import _cell, read_runs

SETTING = ["data.num_clients=20", "server.clients_per_round=1.0", "client.batch_size=10",
           "data.partition=shards", "data.shards_per_client=2", "client.optimizer=sgd",
           "cluster.k=1", "run.threads=1", "run.workers=1"]


def one_run(job: tuple[str, float, int, int, int, list[str]]) -> dict:
    """One run's accuracy per round and how many client updates were rejected."""
    import torch

    from fedcluster.config import load_config
    from fedcluster.loop import run_federation

    torch.set_num_threads(1)
    name, lr, epochs, seed, rounds, extra = job
    over = [*SETTING, f"algorithm.name={name}", f"client.lr={lr}",
            f"client.local_epochs={epochs}", f"seed={seed}", f"rounds={rounds}", *extra]
    t0 = time.perf_counter()
    records = run_federation(load_config(None, over)).rounds
    return {"algorithm": name, "lr": lr, "epochs": epochs, "seed": seed, "rounds": rounds,
            "extra": extra, "curve": [r.accuracy for r in records],
            "rejected": sum(len(r.rejected) for r in records),
            "steps": max(c.steps for c in records[0].clients),
            "seconds": time.perf_counter() - t0}


def reached(curve: list[float], target: float) -> int | None:
    """The first round (1-based) whose accuracy is at least ``target``."""
    return next((r for r, a in enumerate(curve, 1) if not math.isnan(a) and a >= target), None)


def table(runs: list[dict], targets: list[float]) -> str:
    """Per (overrides, local epochs, lr, algorithm): rounds to each target per seed, best
    and final accuracy (%)."""
    head = ("| overrides | epochs | lr | algorithm | "
            + " | ".join(f"rounds to {t:.0%} (per seed)" for t in targets)
            + " | best | final | runs with rejected updates |")
    lines = [head, "|" + " --- |" * (7 + len(targets))]

    def key(r: dict) -> tuple:
        return " ".join(r.get("extra", [])), r["epochs"], r["lr"]

    for extra, epochs, lr in sorted({key(r) for r in runs}):
        for name in ("fedavg", "scaffold"):
            mine = sorted((r for r in runs if key(r) == (extra, epochs, lr) and
                           r["algorithm"] == name), key=lambda r: r["seed"])
            if not mine:
                continue
            cells = [" / ".join(str(reached(r["curve"], t) or "–") for r in mine)
                     for t in targets]
            best = _cell([max((a for a in r["curve"] if not math.isnan(a)), default=0.0)
                          for r in mine])
            final = _cell([r["curve"][-1] for r in mine])
            bad = sum(r["rejected"] > 0 for r in mine)
            lines.append(f"| {extra or '–'} | {epochs} | {lr} | {name} | " + " | ".join(cells) +
                         f" | {best} | {final} | {bad} of {len(mine)} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--lrs", type=float, nargs="+", default=[0.02, 0.05])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--targets", type=float, nargs="+", default=[0.85, 0.9, 0.95])
    p.add_argument("--jobs", type=int, default=1, help="runs at once (processes)")
    p.add_argument("--out", help="also write each run as a JSON line here")
    p.add_argument("--table-from", nargs="+", metavar="JSONL",
                   help="no runs: the table of runs written before with --out")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    if args.table_from:
        runs = read_runs(args.table_from)
        print(table(runs, args.targets))
        return
    jobs = [(name, lr, args.epochs, seed, args.rounds, args.overrides)
            for lr in args.lrs for seed in args.seeds for name in ("fedavg", "scaffold")]
    runs = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for run in pool.map(one_run, jobs):
            runs.append(run)
            print(f"<!-- {run['algorithm']} lr={run['lr']} seed {run['seed']}: final "
                  f"{run['curve'][-1]:.3f}, {run['steps']} steps ({run['seconds']:.0f}s) -->",
                  flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(run) + "\n")
    print(table(runs, args.targets))


if __name__ == "__main__":
    main()
