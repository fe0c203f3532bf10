"""The benchmark workloads' data and config (benchmarks/), and the data pieces they rely on."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fedcluster.data import ArrayDataset, dirichlet, eval_split

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from wdata import WORKLOADS, synthetic_mnist  # noqa: E402


@pytest.fixture(scope="module")
def wdata():
    return synthetic_mnist()


def test_synthetic_data_has_the_documented_shape_and_normalisation(wdata):
    train_x, train_y, test_x, test_y = wdata
    assert train_x.shape == (60000, 1, 28, 28) and test_x.shape == (10000, 1, 28, 28)
    assert train_x.dtype == torch.float32 and train_y.dtype == torch.int64
    assert abs(float(train_x.mean())) < 1e-4 and abs(float(train_x.std()) - 1) < 1e-4
    assert set(train_y.unique().tolist()) == set(range(10))
    # learnable: the class means are far apart relative to the noise
    means = torch.stack([train_x[train_y == c].mean(0).flatten() for c in range(10)])
    assert torch.cdist(means, means).fill_diagonal_(1e9).min() > 5


def test_synthetic_data_is_the_same_every_time(wdata):
    again = synthetic_mnist()
    assert all(torch.equal(a, b) for a, b in zip(wdata, again, strict=True))


def test_float_images_are_normalised_as_they_are():
    x = torch.randn(4, 1, 2, 2)
    ds = ArrayDataset(x, torch.zeros(4, dtype=torch.long), x, torch.zeros(4, dtype=torch.long),
                      1, mean=(0.5,), std=(2.0,))
    torch.testing.assert_close(ds.normalized(x), (x - 0.5) / 2.0)


def test_eval_split_hands_out_every_test_sample_once():
    """W1/W2 evaluate on all 10,000 test images: the union of the clients' eval sets."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 6000)
    test = rng.integers(0, 10, 1000)
    parts = dirichlet(labels, 300, 0.5, rng)
    evals = eval_split(labels, parts, test, rng)
    union = np.concatenate(evals)
    assert len(union) == len(set(union.tolist())) == len(test)


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_workload_configs_load_through_the_public_loader(name):
    import workloads

    from fedcluster import load_config

    workloads.register()
    cfg = load_config(None, workloads.overrides(name, "vmap", 0, False))
    clients, per_round, rounds = WORKLOADS[name]
    assert (cfg.data.num_clients, cfg.clients_per_round, cfg.rounds) == (clients, per_round,
                                                                         rounds)
    assert cfg.data.min_size == 0 and cfg.cluster.k == 1 and cfg.client.optimizer == "sgd"


def test_identity_normalisation_does_not_copy():
    x = torch.randn(4, 1, 2, 2)
    y = torch.zeros(4, dtype=torch.long)
    ds = ArrayDataset(x, y, x, y, 1, mean=(0.0,), std=(1.0,))
    assert ds.normalized(x) is x


@pytest.mark.parametrize("scope", ["members", "all"])
def test_eval_clients_all_evaluates_every_client(scope):
    """W1/W2 evaluate the global model on the whole test set after every round, also
    before every client has been sampled (run.eval_clients = "all")."""
    from fedcluster import load_config, run_federation
    from fedcluster.callbacks import Callback

    class Keep(Callback):
        def on_run_start(self, ctx):
            self.fed = ctx.federation

        def on_round_end(self, result):
            self.result = result

    keep = Keep()
    cfg = load_config(None, ["rounds=1", "run.threads=1", "cluster.k=1",
                             "server.clients_per_round=3", f"run.eval_clients={scope}"])
    run_federation(cfg, [keep])
    sampled = [c.id for c in keep.result.clients]
    every = sum(len(i) for i in keep.fed.eval_idx)
    ours = sum(len(keep.fed.eval_idx[c]) for c in sampled)
    assert keep.result.clusters[0].eval_examples == (every if scope == "all" else ours)
    assert keep.result.clusters[0].members == sorted(sampled)
