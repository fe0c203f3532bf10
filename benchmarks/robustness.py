"""Robust aggregation under simulated attacks: final accuracy of the default digits run,
clean and with attackers, for each ``server.aggregator`` (alone, and ``+nnm``: after
nearest-neighbour mixing, ``server.mixing = "nnm"``) and k = 1, 2, over seeds.

    python benchmarks/robustness.py [--attack sign-flip] [--fraction 0.2] [--scale 10]
        [--rounds 20] [--k 1 2] [--seeds 0 1 2] [--aggregators mean median+nnm ...]
        [key=value ...]

Prints one Markdown row per (aggregator, k, seed) as it finishes (clean accuracy,
attacked accuracy, attacker updates the server accepted), then the README's table: per
aggregator and k, the mean over the seeds with the lowest and highest in brackets.
Extra ``key=value`` overrides apply to every run (e.g. ``run.threads=1``).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from fedcluster.config import load_config
from fedcluster.loop import run_federation

F = "server.byzantine=4"  # the 4 attackers of 20 clients at fraction 0.2
RULES = {"mean": [], "median": [], "trimmed-mean": ["server.trim=0.2"], "krum": [F],
         "multi-krum": [F], "bulyan": [F]}
NNM = ["server.mixing=nnm", F]
RULES |= {f"{name}+nnm": [*RULES[name], *NNM] for name in RULES if name != "mean"}


def final(overrides: list[str]) -> tuple[float, int, int, float]:
    """Final accuracy, attacker updates kept and sent, and seconds of one run."""
    t0 = time.perf_counter()
    summary = run_federation(load_config(None, overrides))
    kept = sum(len(r.attackers) - sum(a in r.rejected for a in r.attackers)
               for r in summary.rounds)
    sent = sum(len(r.attackers) for r in summary.rounds)
    return summary.rounds[-1].accuracy, kept, sent, time.perf_counter() - t0


def cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ({min(values):.2f}–{max(values):.2f})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--attack", default="sign-flip")
    p.add_argument("--fraction", type=float, default=0.2)
    p.add_argument("--scale", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--k", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--aggregators", nargs="+", default=list(RULES), choices=list(RULES))
    p.add_argument("overrides", nargs="*", help="key=value, anywhere on the line")
    argv = sys.argv[1:]
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    args = p.parse_args([a for a in argv if a not in overrides])
    args.overrides += overrides
    attack = [f"attack.kind={args.attack}", f"attack.fraction={args.fraction}",
              f"attack.scale={args.scale}"]
    print(f"| aggregator | k | seed | clean | {args.attack} x{args.scale:g}, "
          f"{args.fraction:.0%} | attacker updates kept |")
    print("| --- | --- | --- | --- | --- | --- |", flush=True)
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for k in args.k:
        for name in args.aggregators:
            for seed in args.seeds:
                base = [f"seed={seed}", f"rounds={args.rounds}", f"cluster.k={k}",
                        f"server.aggregator={name.split('+')[0]}", *RULES[name],
                        *args.overrides]
                clean, _, _, t1 = final(base)
                hit, kept, sent, t2 = final([*base, *attack])
                results.setdefault((name, k), []).append((clean, hit))
                print(f"| {name} | {k} | {seed} | {clean:.3f} | {hit:.3f} | {kept}/{sent} |  "
                      f"<!-- {t1:.0f}s + {t2:.0f}s -->", flush=True)
    print("\n| `server.aggregator` | " + " | ".join(
        f"k = {k} clean | k = {k} attacked" for k in args.k) + " |")
    print("| --- |" + " --- | --- |" * len(args.k))
    for name in args.aggregators:
        cells = [cell([r[i] for r in results[name, k]]) for k in args.k for i in (0, 1)]
        label = f"`{name.split('+')[0]}`" + (" + nnm" if "+" in name else "")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
