"""Clustering on a federation with known groups: ARI, NMI and accuracy per method and seed.

Runs ``examples/rotated-digits.toml`` (or another config) for each seed and each
variant given as ``label:key=value,key=value`` and prints one row per run and the
mean per variant. Example (the per-method table kept in benchmarks/RESULTS.md)::

    PYTHONPATH=src python benchmarks/clustering_acceptance.py --seeds 0 1 2 \\
        refine: kmeans:cluster.method=kmeans fedavg:cluster.k=1 \\
        ifca-3:cluster.method=ifca,cluster.restarts=3 ifca-1:cluster.method=ifca \\
        cfl:cluster.method=cfl,cluster.cfl_eps1=0.25,cluster.cfl_eps2=0.35,cluster.k_max=4 \\
        fl+hc:cluster.method=hierarchical,cluster.metric=cosine,cluster.warmup_rounds=2 \\
        kmeans-pca2:cluster.method=kmeans,cluster.reduce=pca2 \\
        kmeans-updates:cluster.method=kmeans,cluster.features=updates,cluster.metric=cosine

(The federation-by-method sweep of the README's table is clustering_benchmark.py.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from fedcluster.config import load_config
from fedcluster.loop import run_federation

ROOT = Path(__file__).resolve().parents[1]


def run_one(config: str, overrides: list[str], seed: int) -> dict[str, float]:
    cfg = load_config(config, [*overrides, f"seed={seed}", "run.threads=1"])
    t0 = time.perf_counter()
    summary = run_federation(cfg)
    final = summary.final
    assert final is not None
    return {"seed": seed, "ari": final.ari, "nmi": final.nmi, "accuracy": final.accuracy,
            "worst_ari": min(r.ari for r in summary.rounds if r.ari is not None),
            "client_p10": final.client_accuracy.get("p10"), "k": len(final.clusters),
            "seconds": time.perf_counter() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("variants", nargs="+", help="label:key=value,key=value (overrides)")
    p.add_argument("--config", default=str(ROOT / "examples" / "rotated-digits.toml"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args()
    rows = []
    for variant in args.variants:
        label, _, spec = variant.partition(":")
        overrides = [s for s in spec.split(",") if s]
        for seed in args.seeds:
            row = {"variant": label, **run_one(args.config, overrides, seed)}
            rows.append(row)
            print(f"{label:>14} seed {seed}: ARI {row['ari']:.3f} (worst round "
                  f"{row['worst_ari']:.3f}) NMI {row['nmi']:.3f} "
                  f"acc {row['accuracy']:.3f} p10 {row['client_p10']:.3f} k {row['k']} "
                  f"{row['seconds']:.1f}s", flush=True)
        mine = [r for r in rows if r["variant"] == label]
        print(f"{label:>14} mean:   ARI {statistics.mean(r['ari'] for r in mine):.3f} "
              f"acc {statistics.mean(r['accuracy'] for r in mine):.3f} "
              f"min ARI {min(r['ari'] for r in mine):.3f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
