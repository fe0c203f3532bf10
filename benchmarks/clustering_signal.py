"""How much group signal the updates from one shared model carry: KMeans (k = groups) on
every client's update from the same model, scored by ARI against the true groups.

Trains all clients of ``examples/rotated-digits.toml`` (with the given overrides) from the
initial model, or from the FedAvg model after ``--warmup`` rounds, and clusters the
updates in exact principal coordinates: Euclidean, cosine, and the last layer alone
(the last ``--last`` coordinates of the flat vector). Example (benchmarks/RESULTS.md)::

    PYTHONPATH=src python benchmarks/clustering_signal.py data.shift=permute-labels \\
        data.replicate=false data.num_clients=100 --warmup 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fedcluster.build import build
from fedcluster.config import load_config
from fedcluster.fl.clustering import agreement, kmeans_labels
from fedcluster.fl.clustering.features import principal_coords

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rotated-digits.toml"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="key=value overrides of the example")
    p.add_argument("--warmup", type=int, default=0, help="FedAvg rounds (all clients) first")
    p.add_argument("--last", type=int, default=2010, help="size of the last layer (MLP 200-10)")
    args = p.parse_args()
    torch.set_num_threads(1)
    rounds = build(load_config(EXAMPLE, [*args.overrides, "run.threads=1"])).rounds
    n, truth = rounds.federation.num_clients, rounds.federation.groups
    k = int(truth.max()) + 1
    model = rounds.init().models[0].clone()

    def updates(start: torch.Tensor, round_: int) -> tuple[torch.Tensor, torch.Tensor]:
        out = sorted(rounds.engine.train(round_, [(c, start) for c in range(n)]),
                     key=lambda u: u.client)
        return (torch.stack([u.delta for u in out]).double(),
                torch.tensor([float(u.num_examples) for u in out], dtype=torch.float64))

    for r in range(1, args.warmup + 1):
        deltas, weights = updates(model, r)
        model = model + (weights @ deltas / weights.sum()).to(model.dtype)
    deltas, _ = updates(model, args.warmup + 1)

    def ari(x: torch.Tensor) -> float:
        return agreement(truth, kmeans_labels(principal_coords(x), k, seed=0))[0]

    unit = torch.nn.functional.normalize
    print(f"{n} clients, {args.warmup} warm-up rounds: ARI euclidean {ari(deltas):.3f}, "
          f"cosine {ari(unit(deltas, dim=1)):.3f}, last layer {ari(deltas[:, -args.last:]):.3f}, "
          f"last layer cosine {ari(unit(deltas[:, -args.last:], dim=1)):.3f}")


if __name__ == "__main__":
    main()
