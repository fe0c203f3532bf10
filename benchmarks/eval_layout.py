"""Dense against blocked evaluation (``run.eval_layout``), per model.

    PYTHONPATH=src python benchmarks/eval_layout.py [--models digits-cnn,simple-cnn,...]
                                                    [--repeats 3] [--json]

For each model the sequential engine (its default workers and threads) evaluates one
model on every client's test data, once with the model's own forward ("dense") and
once with the convolutional stem in oneDNN's blocked layout ("blocked"), alternating,
and prints the median seconds of each (an evaluation shorter than 0.2 s is
repeated and averaged) and the speed-up; ``auto`` is what
``run.eval_layout = "auto"`` picks (``fedcluster.engines.tuning.BLOCKED_EVAL``). digits-cnn
runs on the 8x8 digits, the others on W1's synthetic MNIST (10,000 test images);
``vgg-stack`` is a VGG-like plain stack of 3x3 convolutions (32 and 64 channels).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import DATASET, register  # noqa: E402

from fedcluster import load_config, prepare  # noqa: E402
from fedcluster.models import MODELS  # noqa: E402

DATA = {"digits-cnn": "digits"}


def vgg_stack(spec, cfg) -> nn.Module:
    c, h, w = spec.input_shape
    return nn.Sequential(
        nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * (h // 4) * (w // 4), spec.num_classes),
    )


def measure(name: str, repeats: int) -> dict:
    data = DATA.get(name, DATASET)
    base = [f"data.dataset={data}", "data.num_clients=20", f"model.name={name}"]
    engines = {}
    for layout in ("dense", "blocked", "auto"):
        ctx, engine = prepare(load_config(None, [*base, f"run.eval_layout={layout}"]))
        engines[layout] = engine
    vector, clients = ctx.model.vector(), list(range(ctx.federation.num_clients))
    t0 = time.perf_counter()
    engines["dense"].evaluate_clients(vector, clients)  # warm up; small sets are looped
    loops = max(1, round(0.2 / (time.perf_counter() - t0)))  # to >= 0.2 s a measurement
    seconds: dict[str, list[float]] = {"dense": [], "blocked": []}
    for _ in range(repeats + 1):  # the first round warms up
        for layout, times in seconds.items():
            t0 = time.perf_counter()
            for _ in range(loops):
                engines[layout].evaluate_clients(vector, clients)
            times.append((time.perf_counter() - t0) / loops)
    dense, blocked = (statistics.median(seconds[k][1:]) for k in ("dense", "blocked"))
    return {"model": name, "images": len(torch.cat([engines["dense"].eval_idx[c]
                                                    for c in clients])),
            "dense_s": round(dense, 3), "blocked_s": round(blocked, 3),
            "speedup": round(dense / blocked, 2),
            "auto": "blocked" if engines["auto"].blocked_eval else "dense"}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="digits-cnn,simple-cnn,mnist-cnn,vgg-stack")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    register()
    if "vgg-stack" not in MODELS:
        MODELS.register("vgg-stack")(vgg_stack)
    rows = [measure(m, args.repeats) for m in args.models.split(",")]
    for row in rows:
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{row['model']:>12}: {row['images']} images, dense {row['dense_s']:.3f} s, "
                  f"blocked {row['blocked_s']:.3f} s ({row['speedup']:.2f}x); "
                  f"auto: {row['auto']}")
    return rows


if __name__ == "__main__":
    main()
