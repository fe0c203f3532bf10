"""Benchmark workloads W1 and W2 (WORKLOADS.md) through fedcluster's public API.

    python benchmarks/workloads.py W1|W2 [--engine auto|sequential|vmap] [--threads N]
                                         [--profile] [--json]

The synthetic data is registered as the dataset ``synthetic-mnist`` in fedcluster's
dataset registry, the config is built with ``load_config`` (the loader of
``fedcluster run``) and the rounds run through ``run_federation`` with one callback
that reads the clock: no benchmark-only code path. Prints FL time (start of round 1
to the end of the last round's evaluation), wall time (interpreter start to now),
peak memory, final accuracy and the number of training examples and steps, and the
CPU seconds of the FL time (all threads; less sensitive than wall time to a busy machine).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Run as a script, the process is the benchmark's own: like a `fedcluster run` process,
# it imports torch (which wdata needs too) and the package with the garbage collector
# paused, and freezes what they made. Imported (tests), it leaves the collector alone.
from fedcluster.cli import import_with_gc_paused  # noqa: E402, I001

if __name__ == "__main__":
    import_with_gc_paused()
from wdata import WORKLOADS, peak_mb, print_result, process_seconds, synthetic_mnist  # noqa: E402

from fedcluster.callbacks import Callback  # noqa: E402
from fedcluster.config import DataConfig, load_config  # noqa: E402
from fedcluster.data import DATASETS, ArrayDataset  # noqa: E402
from fedcluster.engines import choose_engine  # noqa: E402
from fedcluster.loop import run_federation  # noqa: E402
from fedcluster.records import RoundResult, RunContext  # noqa: E402

DATASET = "synthetic-mnist"


def synthetic_dataset(cfg: DataConfig) -> ArrayDataset:
    """W1/W2's data as a fedcluster dataset (float images, already normalised)."""
    train_x, train_y, test_x, test_y = synthetic_mnist()
    return ArrayDataset(train_x, train_y, test_x, test_y, num_classes=10, mean=(0.0,),
                        std=(1.0,))


def register() -> None:
    if DATASET not in DATASETS:
        DATASETS.register(DATASET)(synthetic_dataset)


def overrides(name: str, engine: str, threads: int, profile: bool) -> list[str]:
    """The workload as ``fedcluster run`` overrides (WORKLOADS.md, "Federation")."""
    clients, per_round, rounds = WORKLOADS[name]
    return [
        f"name={name}", "seed=0", f"rounds={rounds}",
        f"data.dataset={DATASET}", f"data.num_clients={clients}", "data.partition=dirichlet",
        "data.alpha=0.5", "data.min_size=0",
        "model.name=mnist-cnn",
        "client.optimizer=sgd", "client.lr=0.01", "client.momentum=0.0", "client.batch_size=32",
        "client.drop_last=true", "client.local_epochs=1",
        f"server.clients_per_round={per_round}", "server.lr=1.0",
        "cluster.k=1", "run.eval_clients=all",  # the global model on all 10,000 test images
        f"run.engine={engine}", f"run.threads={threads}", f"run.profile={str(profile).lower()}",
    ]


class Clock(Callback):
    """FL time: from round 1's start to the end of the last round (after its evaluation)."""

    def __init__(self) -> None:
        self.start = self.end = 0.0
        self.examples = self.steps = 0
        self.profile: dict[str, float] = {}

    def on_run_start(self, ctx: RunContext) -> None:
        self.eval_examples = 0
        self.engine = choose_engine(ctx.config, ctx.model, ctx.device)

    def on_round_start(self, round_: int, clients: list[int]) -> None:
        if round_ == 1:
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_round_end(self, result: RoundResult) -> None:
        self.end, self.cpu_end = time.perf_counter(), time.process_time()
        self.eval_examples = sum(c.eval_examples for c in result.clusters)  # last round's
        self.examples += sum(c.num_examples for c in result.clients)
        self.steps += sum(c.steps for c in result.clients)
        for k, v in (result.profile or {}).items():
            self.profile[k] = self.profile.get(k, 0.0) + v


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workload", choices=sorted(WORKLOADS))
    p.add_argument("--engine", default="auto", choices=["auto", "sequential", "vmap"])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: fedcluster's choice)")
    p.add_argument("--profile", action="store_true", help="add per-section seconds")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    args = p.parse_args(argv)

    register()
    cfg = load_config(None, overrides(args.workload, args.engine, args.threads, args.profile))
    clock = Clock()
    summary = run_federation(cfg, [clock])
    import torch

    out = {
        "impl": f"fedcluster-{args.engine}", "engine": clock.engine, "workload": args.workload,
        "fl_s": round(clock.end - clock.start, 3),
        "fl_cpu_s": round(clock.cpu_end - clock.cpu_start, 3),
        "wall_s": round(process_seconds(), 3),
        "peak_mb": peak_mb(),
        "accuracy": summary.final.accuracy, "train_examples": clock.examples,
        "steps": clock.steps, "eval_examples": clock.eval_examples,
        "threads": torch.get_num_threads(),
    }
    if args.profile:
        out["profile"] = {k: round(v, 3) for k, v in clock.profile.items()}
    print_result(out, args.json)
    return out


if __name__ == "__main__":
    main()
