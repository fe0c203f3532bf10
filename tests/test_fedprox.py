"""FedProx (algorithm.name = "fedprox"): the proximal gradient by hand on a linear model,
mu = 0 equal to FedAvg bit for bit on both engines, the vmap engine equal to the
sequential one, and the config's checks."""

import numpy as np
import pytest
import torch
from torch import nn

from fedcluster import load_config, prepare
from fedcluster.config import ConfigError, config_to_toml
from fedcluster.engines import VmapEngine
from fedcluster.fl.client import local_train
from fedcluster.fl.flat import FlatModel
from fedcluster.loop import run_federation

torch.set_num_threads(1)


def _softmax_ce_grad(W, b, X, Y):
    """The gradient of the mean softmax cross-entropy of a linear model, by its closed
    form ``(softmax(X W^T + b) - onehot(Y))^T X / n``."""
    z = X @ W.T + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(Y)), Y] -= 1
    return p.T @ X / len(Y), p.mean(axis=0)


@pytest.mark.parametrize("mu", [0.0, 0.5, 3.0])
def test_proximal_steps_by_hand_on_a_linear_model(mu):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(6, 3)), np.array([0, 1, 1, 0, 1, 0])
    W0, b0 = rng.normal(size=(2, 3)), rng.normal(size=2)
    module = nn.Linear(3, 2).double()
    model = FlatModel(module)
    start = torch.cat([torch.from_numpy(W0).flatten(), torch.from_numpy(b0)])
    cfg = load_config(None, ["client.optimizer=sgd", "client.lr=0.3", "client.batch_size=6",
                             "client.local_epochs=3"]).client
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    delta, _, steps = local_train(model, start, x, y, torch.arange(6), cfg,
                                  torch.Generator().manual_seed(0), prox_mu=mu)
    assert steps == 3  # one full batch per epoch
    W, b = W0.copy(), b0.copy()
    for _ in range(3):  # w <- w - lr * (grad L(w) + mu * (w - w0))
        gW, gb = _softmax_ce_grad(W, b, X, Y)
        W, b = W - 0.3 * (gW + mu * (W - W0)), b - 0.3 * (gb + mu * (b - b0))
    want = np.concatenate([W.flatten(), b]) - start.numpy()
    # float64; batch order permutes the sum over 6 samples: rounding of order 1e-16
    np.testing.assert_allclose(delta.numpy(), want, rtol=1e-12, atol=1e-14)


def test_a_larger_mu_keeps_the_local_model_closer_to_its_start():
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    cfg = load_config(None, ["client.optimizer=sgd", "client.lr=0.5", "client.batch_size=8",
                             "client.local_epochs=3"]).client
    norms = []
    for mu in (None, 0.1, 1.0):
        model = FlatModel(nn.Linear(5, 3))
        start = torch.zeros(model.numel)
        delta, _, _ = local_train(model, start, x, y, torch.arange(64), cfg,
                                  torch.Generator().manual_seed(1), prox_mu=mu)
        norms.append(delta.norm().item())
    assert norms[0] > norms[1] > norms[2] > 0


RUN = ["rounds=2", "data.num_clients=8", "run.threads=1", "run.workers=1", "cluster.k=2"]


@pytest.mark.parametrize("engine", ["sequential", "vmap"])
def test_fedprox_with_mu_0_is_fedavg_bit_for_bit(engine):
    base = [*RUN, f"run.engine={engine}", "data.augment=false"]
    fedavg = run_federation(load_config(None, base), [])
    prox = run_federation(load_config(None, [*base, "algorithm.name=fedprox",
                                             "algorithm.mu=0"]), [])
    assert torch.equal(prox.models, fedavg.models)
    assert [r.to_json()["accuracy"] for r in prox.rounds] == \
        [r.to_json()["accuracy"] for r in fedavg.rounds]
    # and mu > 0 does change the run
    other = run_federation(load_config(None, [*base, "algorithm.name=fedprox",
                                              "algorithm.mu=1"]), [])
    assert not torch.equal(other.models, fedavg.models)
    assert torch.isfinite(other.models).all()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_vmap_engine_gives_the_sequential_engines_fedprox_updates(optimizer):
    over = ["data.num_clients=6", "run.threads=1", "run.engine=sequential", "data.augment=false",
            f"client.optimizer={optimizer}", "client.lr=0.05", "algorithm.name=fedprox",
            "algorithm.mu=0.5"]
    cfg = load_config(None, over)
    ctx, seq = prepare(cfg)
    start = ctx.model.vector()
    g = torch.Generator().manual_seed(3)
    jobs = [(c, start + 0.01 * torch.randn(start.shape, generator=g)) for c in range(6)]
    expected = list(seq.train(1, jobs))
    plain = list(prepare(load_config(None, over[:-2]))[1].train(1, jobs))
    vm = VmapEngine(ctx.federation, ctx.model, cfg.client, cfg.seed, mu=0.5)
    for a, b, c in zip(vm.train(1, jobs), expected, plain, strict=True):
        assert a.steps == b.steps > 1
        # the same steps summed in another order (tests/test_engines.py's tolerance;
        # Adam's m / sqrt(v) may turn a rounding of a near-zero gradient into up to lr)
        off = (a.delta - b.delta).abs() > 1e-6 + 1e-4 * b.delta.abs()
        assert off.float().mean() < 1e-3 and (a.delta - b.delta).norm() < 1e-3 * b.delta.norm()
        assert (b.delta - c.delta).norm() > 1e-2 * c.delta.norm()  # the term matters


def test_fedprox_composes_with_clustering():
    s = run_federation(load_config(None, [*RUN, "rounds=3", "algorithm.name=fedprox",
                                          "algorithm.mu=0.1", "cluster.method=ifca"]), [])
    assert s.models.shape[0] == 2 and torch.isfinite(s.models).all()


def test_the_algorithm_section_is_checked():
    cfg = load_config(None, ["algorithm.name=fedprox", "algorithm.mu=0.3"])
    assert (cfg.algorithm.name, cfg.algorithm.prox_mu) == ("fedprox", 0.3)
    assert load_config(None, ["algorithm.mu=0.3"]).algorithm.prox_mu is None  # fedavg
    assert "[algorithm]" in config_to_toml(cfg)
    with pytest.raises(ConfigError, match="algorithm.name = 'scaffold'"):
        load_config(None, ["algorithm.name=scaffold"])  # not yet
    with pytest.raises(ConfigError, match="algorithm.mu = -0.1"):
        load_config(None, ["algorithm.mu=-0.1"])
    with pytest.raises(ConfigError, match="centralized"):
        load_config(None, ["mode=centralized", "algorithm.name=fedprox"])
