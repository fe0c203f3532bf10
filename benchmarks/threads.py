"""Worker threads against torch threads: how to spend the cores, per model size.

    PYTHONPATH=src python benchmarks/threads.py [--models mlp,digits-cnn,mnist-cnn,resnet18]
                                                [--repeats 3] [--json]

For each model, the sequential engine trains the same clients (several local epochs
for the small models) three ways: one worker with one torch thread, one worker with
all cores as torch threads, and one worker thread per core with one torch thread each
(``run.workers``).
Prints the median seconds and training steps per second of each, the speed-up of the
worker threads over the best single worker, and ``run.workers = 0``'s choice (from the
model's FLOPs per step). ``mnist-cnn`` trains on W1's synthetic MNIST (28x28), the
others on the 8x8 digits.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import DATASET, register  # noqa: E402

from fedcluster import load_config, prepare  # noqa: E402
from fedcluster.engines import SequentialEngine  # noqa: E402
from fedcluster.engines.tuning import choose_workers, process_cores, step_flops  # noqa: E402

# model: (overrides, clients trained per measurement)
MODELS = {
    "mlp": (["model.name=mlp", "client.local_epochs=20"], 20),
    "digits-cnn": (["model.name=digits-cnn", "client.local_epochs=10"], 20),
    "mnist-cnn": ([f"data.dataset={DATASET}", "model.name=mnist-cnn"], 4),
    "resnet18": (["model.name=resnet18", "client.local_epochs=2"], 4),
}


def measure(name: str, repeats: int) -> dict:
    overrides, n_jobs = MODELS[name]
    cfg = load_config(None, ["data.num_clients=20", "client.optimizer=sgd", "client.lr=0.01",
                             "run.workers=1", "run.threads=1", *overrides])
    ctx, one = prepare(cfg)
    cores = process_cores()
    many = SequentialEngine(ctx.federation, ctx.model, cfg.client, cfg.seed, workers=cores)
    jobs = [(c, ctx.model.vector()) for c in range(n_jobs)]
    spec = ctx.federation.dataset
    flops = step_flops(ctx.model, spec.input_shape, cfg.client.batch_size)
    variants = {"1 worker x 1 thread": (one, 1), f"1 worker x {cores} threads": (one, cores),
                f"{cores} workers x 1 thread": (many, 1)}
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    steps = 0
    for _ in range(repeats):
        for label, (engine, threads) in variants.items():  # alternate: load hits all alike
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            steps = sum(u.steps for u in engine.train(1, jobs))
            seconds[label].append(time.perf_counter() - t0)
    med = {v: statistics.median(s) for v, s in seconds.items()}
    single = min(list(med)[:2], key=med.get)
    return {"model": name, "gflop_per_step": round(flops / 1e9, 3), "steps": steps,
            "median_s": {v: round(s, 3) for v, s in med.items()},
            "steps_per_s": {v: round(steps / s, 1) for v, s in med.items()},
            "workers_speedup": round(med[single] / med[list(med)[2]], 2),
            "auto_workers": choose_workers(flops, cores)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    register()
    for name in args.models.split(","):
        out = measure(name, args.repeats)
        if args.json:
            print(json.dumps(out))
            continue
        print(f"{name}: {out['gflop_per_step']} GFLOP per step, {out['steps']} steps")
        for v, s in out["median_s"].items():
            print(f"  {v:>22}: {s:7.3f} s  {out['steps_per_s'][v]:8.1f} steps/s")
        print(f"  worker threads vs the best single worker: {out['workers_speedup']}x; "
              f"run.workers = 0 picks {out['auto_workers']}")


if __name__ == "__main__":
    main()
