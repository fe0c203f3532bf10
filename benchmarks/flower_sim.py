"""W1/W2 in Flower's simulation runtime (Ray, one CPU per client actor), for comparison.

    pip install -e '.[bench]'    # flwr[simulation]; heavy (Ray): best in its own venv
    python benchmarks/flower_sim.py W1|W2 [--json]

The same data, model, partition (same seeds), local training (SGD lr 0.01, batch 32,
drop_last, one epoch) and sample-weighted FedAvg. Flower picks which simulated nodes
run each round; the strategy tells them which partitions to train, those the bare
loop and fedcluster sample (SeedSequence key (0, 2, round)), so all three do the same
steps. The server evaluates the global model on the 10,000 test images after every round.
FL time runs from the end of Flower's round-0 evaluation of the initial model to the
end of the last round's evaluation.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bare_loop import dirichlet_split, mnist_cnn, sampled  # noqa: E402
from wdata import WORKLOADS, peak_mb, print_result, process_seconds, synthetic_mnist  # noqa: E402

try:
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, FitIns, ndarrays_to_parameters
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation
except ImportError:  # pragma: no cover - the optional "bench" extra
    sys.exit("flower_sim.py needs Flower: pip install 'flwr[simulation]' (the 'bench' extra)")

@lru_cache(maxsize=1)
def data(n_clients: int) -> tuple:
    train_x, train_y, test_x, test_y = synthetic_mnist()
    parts = [torch.from_numpy(p) for p in dirichlet_split(train_y.numpy(), n_clients, 0.5)]
    return train_x, train_y, test_x, test_y, parts


class SameClientsFedAvg(FedAvg):
    """FedAvg whose round ``r`` trains the partitions :func:`sampled` names."""

    def __init__(self, n_clients: int, per_round: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.n_clients, self.per_round = n_clients, per_round

    def configure_fit(self, server_round, parameters, client_manager):  # noqa: ANN001
        chosen = super().configure_fit(server_round, parameters, client_manager)
        parts = sampled(self.n_clients, self.per_round, server_round)
        return [(proxy, FitIns(ins.parameters, {**ins.config, "partition": int(part)}))
                for (proxy, ins), part in zip(chosen, parts, strict=True)]


def get_weights(model: torch.nn.Module) -> list[np.ndarray]:
    return [v.detach().cpu().numpy() for v in model.state_dict().values()]


def set_weights(model: torch.nn.Module, weights: list[np.ndarray]) -> None:
    keys = model.state_dict().keys()
    model.load_state_dict({k: torch.from_numpy(np.asarray(w)) for k, w in zip(keys, weights,
                                                                             strict=True)})


class Client(NumPyClient):
    def __init__(self, cid: int, n_clients: int) -> None:
        self.cid, self.n_clients = cid, n_clients

    def fit(self, parameters: list[np.ndarray], config: dict) -> tuple:
        torch.set_num_threads(1)
        train_x, train_y, _, _, parts = data(self.n_clients)
        idx = parts[int(config.get("partition", self.cid))]
        model = mnist_cnn()
        set_weights(model, parameters)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        order = idx[torch.randperm(len(idx))]
        steps = len(idx) // 32
        for s in range(steps):
            b = order[s * 32:(s + 1) * 32]
            loss = F.cross_entropy(model(train_x[b]), train_y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return get_weights(model), len(idx), {"steps": steps}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workload", choices=sorted(WORKLOADS))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    n_clients, per_round, rounds = WORKLOADS[args.workload]
    torch.manual_seed(0)
    torch.set_num_threads(1)
    logging.getLogger("flwr").setLevel(logging.WARNING)
    marks: dict[str, float] = {}
    totals = {"steps": 0, "examples": 0, "accuracy": float("nan")}

    def central_eval(server_round: int, parameters: list[np.ndarray], config: dict) -> tuple:
        _, _, test_x, test_y, _ = data(n_clients)
        model = mnist_cnn()
        set_weights(model, parameters)
        model.eval()
        correct, loss = 0, 0.0
        with torch.inference_mode():
            for s in range(0, len(test_x), 1000):
                out = model(test_x[s:s + 1000])
                loss += float(F.cross_entropy(out, test_y[s:s + 1000], reduction="sum"))
                correct += int((out.argmax(1) == test_y[s:s + 1000]).sum())
        totals["accuracy"] = correct / len(test_x)
        marks["start" if server_round == 0 else "end"] = time.perf_counter()
        return loss / len(test_x), {"accuracy": totals["accuracy"]}

    def fit_metrics(results: list[tuple[int, dict]]) -> dict:
        totals["steps"] += sum(int(m["steps"]) for _, m in results)
        totals["examples"] += sum(n for n, _ in results)
        return {}

    def server_fn(context: Context) -> ServerAppComponents:
        strategy = SameClientsFedAvg(
            n_clients, per_round, fraction_fit=per_round / n_clients, fraction_evaluate=0.0,
            min_fit_clients=per_round, min_evaluate_clients=0,
            min_available_clients=n_clients, evaluate_fn=central_eval,
            initial_parameters=ndarrays_to_parameters(get_weights(mnist_cnn())),
            fit_metrics_aggregation_fn=fit_metrics,
        )
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))

    # Ray's workers unpickle the client by reference: it must come from an importable
    # module (this file imported as "flower_sim", found through PYTHONPATH), not __main__.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])
    import flower_sim

    def client_fn(context: Context):
        cid = int(context.node_config["partition-id"])
        return flower_sim.Client(cid, n_clients).to_client()

    run_simulation(
        server_app=ServerApp(server_fn=server_fn), client_app=ClientApp(client_fn=client_fn),
        num_supernodes=n_clients,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    out = {"impl": "flower", "workload": args.workload,
           "fl_s": round(marks["end"] - marks["start"], 3), "fl_cpu_s": float("nan"),
           "wall_s": round(process_seconds(), 3),
           "peak_mb": peak_mb(),
           "accuracy": totals["accuracy"], "train_examples": totals["examples"],
           "steps": totals["steps"]}
    print_result(out, args.json)
    return out


if __name__ == "__main__":
    main()
