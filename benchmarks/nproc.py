"""One process vs N local worker processes (``fedcluster run --nproc N``), CPU-bound.

Runs the same federation as one process with N worker threads of one torch thread
each (``run.workers = N``, what ``run.workers = 0`` picks for small models), as one
process with one worker on N torch threads, and as N worker processes (``--nproc N``,
cores shared out), alternating, and prints the median FL time (round 1 to the end of
the last evaluation, from ``summary.json``) and wall time (interpreter start to exit,
launcher included) with the speed-up. Also checks that the runs agree.

    python benchmarks/nproc.py [--workers 2] [--repeats 3] [--json] [override ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# CPU-bound: 40 clients, all sampled, 5 local epochs each, k = 2.
CONFIG = ["rounds=5", "data.num_clients=40", "client.local_epochs=5", "cluster.k=2",
          "stop.accuracy_delta=0"]


def variants(n: int) -> dict[str, list[str]]:
    """Label -> extra command-line arguments."""
    return {f"1 ({n} worker threads)": [f"run.workers={n}", "run.threads=1"],
            f"1 (1 worker, {n} torch threads)": ["run.workers=1", f"run.threads={n}"],
            f"{n} (--nproc {n})": ["--nproc", str(n)]}


def one_run(overrides: list[str], extra: list[str], out: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "fedcluster", "run", *overrides, *extra, "--out", str(out), "-q"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    summary = json.loads((out / "summary.json").read_text())
    return {"wall": wall, "fl": summary["seconds"], "accuracy": summary["final"]["accuracy"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    p.add_argument("overrides", nargs="*", help="extra section.key=value for the config")
    args = p.parse_args()
    overrides = CONFIG + args.overrides
    runs = variants(args.workers)
    threads, _, procs = list(runs)
    results: dict[str, list[dict[str, float]]] = {n: [] for n in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for i, n in enumerate(results):  # alternate, so load hits every variant alike
                results[n].append(one_run(overrides, runs[n], Path(tmp) / f"{i}-{rep}"))
    med = {n: {k: statistics.median(r[k] for r in rs) for k in ("wall", "fl")}
           for n, rs in results.items()}
    best = min(list(runs)[:2], key=lambda n: med[n]["fl"])
    accs = {r["accuracy"] for n in (threads, procs) for r in results[n]}
    out = {"config": overrides, "cores": len(os.sched_getaffinity(0)), "repeats": args.repeats,
           "median": med, "best_single": best,
           "speedup_fl": med[best]["fl"] / med[procs]["fl"],
           "speedup_wall": med[best]["wall"] / med[procs]["wall"],
           "same_accuracy_1_thread": len(accs) == 1}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['cores']} cores, median of {args.repeats}, config: {' '.join(overrides)}")
    print(f"{'processes':>32} {'FL s':>8} {'wall s':>8}")
    for n, m in med.items():
        print(f"{n:>32} {m['fl']:>8.2f} {m['wall']:>8.2f}")
    print(f"speed-up of {procs} over the best single process ({best}): "
          f"{out['speedup_fl']:.2f}x FL time, {out['speedup_wall']:.2f}x wall time; same final "
          f"accuracy as {threads}: {out['same_accuracy_1_thread']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
