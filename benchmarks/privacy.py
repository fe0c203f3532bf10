"""Privacy against utility: final accuracy and epsilon of the default digits run under
DP-FedAvg (``[privacy]``) for a few noise multipliers, k = 1 and 2.

    python benchmarks/privacy.py [--noise 0 0.3 1] [--clip 1] [--delta 1e-5]
        [--rounds 20] [--k 1 2] [--adaptive] [key=value ...]

Prints one Markdown table row per (noise multiplier, k): epsilon at delta after the run,
the final accuracy, and the same run without DP for reference (once per k). Extra
``key=value`` overrides apply to every run.
"""

from __future__ import annotations

import argparse
import time

from fedcluster.config import load_config
from fedcluster.loop import run_federation


def final(overrides: list[str]) -> tuple[float, float | None, float]:
    t0 = time.perf_counter()
    last = run_federation(load_config(None, overrides)).rounds[-1]
    eps = last.privacy["epsilon"] if last.privacy is not None else None
    return last.accuracy, eps, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.3, 1.0])
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--k", type=int, nargs="+", default=[1, 2])
    p.add_argument("--adaptive", action="store_true")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    print("| k | noise multiplier | clip | ε | accuracy | without DP |")
    print("| --- | --- | --- | --- | --- | --- |")
    for k in args.k:
        base = [f"rounds={args.rounds}", f"cluster.k={k}", *args.overrides]
        clean, _, t0 = final(base)
        for z in args.noise:
            dp = [*base, "privacy.enabled=true", f"privacy.noise_multiplier={z}",
                  f"privacy.clip={args.clip}", f"privacy.delta={args.delta}",
                  f"privacy.adaptive={str(args.adaptive).lower()}"]
            acc, eps, t = final(dp)
            shown = "∞" if eps is None else f"{eps:.3g}"
            print(f"| {k} | {z:g} | {args.clip:g}{' adaptive' if args.adaptive else ''} | "
                  f"{shown} | {acc:.3f} | {clean:.3f} |  <!-- {t0:.0f}s, {t:.0f}s -->",
                  flush=True)


if __name__ == "__main__":
    main()
