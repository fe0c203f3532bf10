"""W1/W2 as a bare PyTorch loop: one process, no FL machinery, the same steps.

    python benchmarks/bare_loop.py W1|W2 [--threads 2] [--json]

The baseline a researcher would write by hand: a model, a state dict copied to each
sampled client, ``torch.optim.SGD``, a weighted average of the state dicts, and an
evaluation on the 10,000 test images after every round. Partition and client
sampling draw from the same seeds as fedcluster (SeedSequence keys (0, 1) and
(0, 2, round)), so both do exactly the same number of training steps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wdata import WORKLOADS, peak_mb, print_result, process_seconds, synthetic_mnist  # noqa: E402


def dirichlet_split(labels: np.ndarray, n: int, alpha: float) -> list[np.ndarray]:
    rng = np.random.default_rng(np.random.SeedSequence([0, 1]))
    parts: list[list[np.ndarray]] = [[] for _ in range(n)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cuts = np.floor(np.cumsum(rng.dirichlet(np.full(n, alpha))) * len(idx)).astype(int)
        for client, chunk in enumerate(np.split(idx, cuts[:-1])):
            parts[client].append(chunk)
    return [np.concatenate(p) for p in parts]


def sampled(n_clients: int, per_round: int, round_: int) -> np.ndarray:
    """The clients of a round, drawn as fedcluster draws them (key (0, 2, round))."""
    rng = np.random.default_rng(np.random.SeedSequence([0, 2, round_]))
    return np.sort(rng.choice(n_clients, size=per_round, replace=False))


def mnist_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workload", choices=sorted(WORKLOADS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n_clients, per_round, rounds = WORKLOADS[args.workload]

    train_x, train_y, test_x, test_y = synthetic_mnist()
    parts = [torch.from_numpy(q) for q in dirichlet_split(train_y.numpy(), n_clients, 0.5)]
    model = mnist_cnn()
    global_state = {k: v.clone() for k, v in model.state_dict().items()}
    examples = steps = 0
    eval_s = 0.0

    t0, cpu0 = time.perf_counter(), time.process_time()
    for r in range(1, rounds + 1):
        total = {k: torch.zeros_like(v) for k, v in global_state.items()}
        weight = 0
        for c in sampled(n_clients, per_round, r):
            idx = parts[c]
            model.load_state_dict(global_state)
            model.train()
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            order = idx[torch.randperm(len(idx))]
            for s in range(len(idx) // 32):
                b = order[s * 32:(s + 1) * 32]
                loss = F.cross_entropy(model(train_x[b]), train_y[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps += 1
            for k, v in model.state_dict().items():
                total[k] += len(idx) * v
            weight += len(idx)
            examples += len(idx)
        global_state = {k: v / weight for k, v in total.items()}
        model.load_state_dict(global_state)
        t_eval = time.perf_counter()
        model.eval()
        correct = 0
        with torch.inference_mode():
            for s in range(0, len(test_x), 1000):
                correct += int((model(test_x[s:s + 1000]).argmax(1) == test_y[s:s + 1000]).sum())
        eval_s += time.perf_counter() - t_eval
    fl, fl_cpu = time.perf_counter() - t0, time.process_time() - cpu0

    out = {"impl": "bare-loop", "workload": args.workload, "fl_s": round(fl, 3),
           "fl_cpu_s": round(fl_cpu, 3), "eval_s": round(eval_s, 3),
           "wall_s": round(process_seconds(), 3),
           "peak_mb": peak_mb(),
           "accuracy": correct / len(test_x), "train_examples": examples, "steps": steps,
           "threads": args.threads}
    print_result(out, args.json)
    return out


if __name__ == "__main__":
    main()
