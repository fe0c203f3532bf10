"""The synthetic MNIST-shaped data of workloads W1 and W2 (WORKLOADS.md), generated in code.

Only torch: the bare loop and the Flower comparison import this too, so every
implementation trains on exactly the same tensors.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["WORKLOADS", "peak_mb", "print_result", "process_seconds", "synthetic_mnist"]

_IMPORTED = time.perf_counter()

# name: (clients, sampled per round, rounds)
WORKLOADS = {"W1": (100, 10, 5), "W2": (1000, 100, 3)}


def synthetic_mnist() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(train_x [60000,1,28,28], train_y, test_x [10000,1,28,28], test_y)``, float32
    images normalised with the training set's mean and std, int64 labels; one generator
    seeded 0, drawn in the order WORKLOADS.md gives."""
    g = torch.Generator().manual_seed(0)
    protos = torch.randn(10, 1, 7, 7, generator=g)
    protos = F.interpolate(protos, size=(28, 28), mode="bilinear", align_corners=False)
    protos = protos / protos.std(dim=(1, 2, 3), keepdim=True)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=g)
        x = protos[y].mul_(0.35)  # in place where possible: same values, less peak memory
        return x.add_(torch.randn(n, 1, 28, 28, generator=g)), y

    train_x, train_y = draw(60000)
    test_x, test_y = draw(10000)
    mean, std = train_x.mean(), train_x.std()
    return train_x.sub_(mean).div_(std), train_y, test_x.sub_(mean).div_(std), test_y


def process_seconds() -> float:
    """Seconds since this process started (Linux: from /proc; else since this import)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _IMPORTED


def peak_mb() -> float:
    """This process's peak resident memory in MB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def print_result(out: dict, as_json: bool) -> None:
    """One JSON line (for compare.py) or an aligned key: value listing."""
    if as_json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>15}: {v}")
