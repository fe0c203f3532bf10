"""Robust aggregation under simulated attacks: final accuracy of the default digits run,
clean and with attackers, for each ``server.aggregator`` and k = 1, 2.

    python benchmarks/robustness.py [--attack sign-flip] [--fraction 0.2] [--scale 10]
        [--rounds 20] [--k 1 2] [--aggregators mean median ...] [key=value ...]

Prints one Markdown table row per (aggregator, k): clean accuracy, attacked accuracy,
and how many attacker updates the server accepted over the run. Extra ``key=value``
overrides apply to every run.
"""

from __future__ import annotations

import argparse
import time

from fedcluster.config import load_config
from fedcluster.loop import run_federation

RULES = {"mean": [], "median": [], "trimmed-mean": ["server.trim=0.2"],
         "krum": ["server.byzantine=4"], "multi-krum": ["server.byzantine=4"],
         "bulyan": ["server.byzantine=4"]}


def final(overrides: list[str]) -> tuple[float, int, int, float]:
    t0 = time.perf_counter()
    summary = run_federation(load_config(None, overrides))
    kept = sum(len(r.attackers) - sum(a in r.rejected for a in r.attackers)
               for r in summary.rounds)
    sent = sum(len(r.attackers) for r in summary.rounds)
    return summary.rounds[-1].accuracy, kept, sent, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--attack", default="sign-flip")
    p.add_argument("--fraction", type=float, default=0.2)
    p.add_argument("--scale", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--k", type=int, nargs="+", default=[1, 2])
    p.add_argument("--aggregators", nargs="+", default=list(RULES), choices=list(RULES))
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    attack = [f"attack.kind={args.attack}", f"attack.fraction={args.fraction}",
              f"attack.scale={args.scale}"]
    print(f"| aggregator | k | clean | {args.attack} x{args.scale:g}, "
          f"{args.fraction:.0%} | attacker updates kept |")
    print("| --- | --- | --- | --- | --- |")
    for k in args.k:
        for name in args.aggregators:
            base = [f"rounds={args.rounds}", f"cluster.k={k}", f"server.aggregator={name}",
                    *RULES[name], *args.overrides]
            clean, _, _, t1 = final(base)
            hit, kept, sent, t2 = final([*base, *attack])
            print(f"| {name} | {k} | {clean:.3f} | {hit:.3f} | {kept}/{sent} |  "
                  f"<!-- {t1:.0f}s + {t2:.0f}s -->", flush=True)


if __name__ == "__main__":
    main()
