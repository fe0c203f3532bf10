"""Clustering 100 resnet18-sized client updates through sketches: time and peak memory.

Updates are synthetic, with known groups: update i = centre[g(i)] + noise, each of
resnet18's size (torchvision, 10 classes), made and sketched ``--batch`` at a time
as a server would receive them, so only the ``[m, sketch_dim]`` sketches and one
batch of updates are ever held.
Prints the sketch and clustering times, the ARI against the groups, and the peak
resident memory of the process (with what stacking the full updates would take).

    PYTHONPATH=src python benchmarks/sketch_updates.py [--clients 100] [--dim 256]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from torchvision.models import resnet18

from fedcluster.fl.clustering import agreement, kmeans_labels, sketch


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--batch", type=int, default=10, help="updates sketched together")
    p.add_argument("--noise", type=float, default=1.0, help="noise norm / centre norm")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    kmeans_labels(np.random.default_rng(0).normal(size=(8, 2)), 2, seed=0)  # import sklearn
    t_import = time.perf_counter() - t0
    size = sum(t.numel() for t in resnet18(num_classes=10).parameters())
    base = peak_rss_mib()
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(args.groups, size, generator=gen) * 1e-3
    truth = np.arange(args.clients) % args.groups
    sketches = torch.empty(args.clients, args.dim)
    t_sketch = 0.0
    for start in range(0, args.clients, args.batch):
        groups = torch.from_numpy(truth[start:start + args.batch])
        noise = torch.randn(len(groups), size, generator=gen) * (1e-3 * args.noise)
        batch = centres[groups] + noise
        t0 = time.perf_counter()
        sketches[start:start + len(groups)] = sketch(batch, args.dim, seed=0)
        t_sketch += time.perf_counter() - t0
        del batch, noise
    t0 = time.perf_counter()
    labels = kmeans_labels(sketches.double().numpy(), args.groups, seed=0)
    t_cluster = time.perf_counter() - t0
    ari = agreement(truth, labels)[0]
    full_gib = args.clients * size * 4 / 2**30
    dense_r_gib = size * args.dim * 4 / 2**30
    print(f"{args.clients} updates of {size:,} floats (resnet18), sketch_dim {args.dim}, "
          f"batches of {args.batch}, {args.threads} thread(s)")
    print(f"sketching: {t_sketch:.2f} s in all, {1000 * t_sketch / args.clients:.1f} ms per update")
    print(f"kmeans on the sketches: {t_cluster:.3f} s; ARI vs true groups {ari:.3f} "
          f"(importing scikit-learn, once per process, took {t_import:.2f} s before)")
    print(f"sketch + kmeans: {t_sketch + t_cluster:.2f} s")
    print(f"peak RSS {peak_rss_mib():.0f} MiB (before making updates: {base:.0f} MiB); "
          f"stacking the updates would take {full_gib:.1f} GiB, a dense projection matrix "
          f"{dense_r_gib:.1f} GiB")


if __name__ == "__main__":
    main()
