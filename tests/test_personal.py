"""FedDyn (fl/feddyn.py) and the personalised algorithms (fl/personal.py): FedDyn's state
update in closed form, Ditto's personal steps by hand on a linear model, frozen
parameters, the client's own layers kept out of the cluster model, every algorithm on
the default digits run, personalised methods against FedAvg on 2-class clients, and the
config's checks."""

import dataclasses

import numpy as np
import pytest
import torch
from _linear import softmax_ce_grad
from torch import nn

from fedcluster import load_config, prepare
from fedcluster.build import build
from fedcluster.callbacks.base import CallbackList
from fedcluster.config import ConfigError
from fedcluster.engines import VmapEngine
from fedcluster.fl.client import LocalRule, Update, local_train
from fedcluster.fl.client_state import rows, write
from fedcluster.fl.feddyn import KEY as DYN
from fedcluster.fl.feddyn import FedDyn
from fedcluster.fl.flat import FlatModel
from fedcluster.fl.personal import KEY, Ditto, local_entries
from fedcluster.fl.server import RoundUpdates
from fedcluster.fl.state import new_state
from fedcluster.loop import initial_state, run_federation
from fedcluster.models import MODELS
from fedcluster.profiling import Profiler

torch.set_num_threads(1)

RUN = ["rounds=2", "data.num_clients=6", "run.threads=1", "run.workers=1"]


@MODELS.register("test-bn-cnn")
def _bn_cnn(spec, cfg):
    c, h, w = spec.input_shape
    return nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * h * w, spec.num_classes))


def test_feddyn_state_update_in_closed_form():
    """g_i+ = g_i - a (theta_i - theta); h+ = h - a/m sum_i (theta_i - theta);
    theta+ = mean_i theta_i - h+/a (Acar et al. 2021, Algorithm 1), m = the 4 members."""
    alpha = 0.5
    theta = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    dyn = FedDyn(num_clients=4, params=3, alpha=alpha)
    state = dyn.prepare(new_state(theta, 4))
    state.assignment[:] = 0
    g0 = torch.tensor([[0.1, 0.2, 0.3], [-1.0, 0.0, 1.0]], dtype=torch.float64)
    write(state.clients[DYN], [1, 3], g0)
    h0 = torch.tensor([[0.4, -0.4, 0.2]], dtype=torch.float64)
    state = dataclasses.replace(state, server_opt={DYN: h0.clone()})
    begun = dyn.start(state, 1, None, [(1, theta), (3, theta)], np.array([0, 0]))
    assert torch.equal(begun.corrections, -g0)  # the linear term's gradient
    d = torch.tensor([[0.3, 0.1, -0.2], [-0.1, 0.5, 0.4]], dtype=torch.float64)
    kept = RoundUpdates.of([Update(1, d[0], 17, 0.0, 3), Update(3, d[1], 40, 0.0, 5)])
    _, unit = dyn.before_step(state, 1, None, kept, [theta, theta])
    assert [u.num_examples for u in unit.updates] == [1, 1]  # the paper's plain mean
    stepped = dataclasses.replace(state, models=(theta + d.mean(0))[None])  # the server's mean
    out = dyn.after_step(stepped, unit, np.array([0, 0]), np.array([0, 0]))
    torch.testing.assert_close(rows(out.clients[DYN], [1, 3]), g0 - alpha * d,
                               rtol=0, atol=1e-15)
    assert not rows(out.clients[DYN], [0, 2]).any()
    h1 = h0 - alpha / 4 * d.sum(0)
    torch.testing.assert_close(out.server_opt[DYN], h1, rtol=0, atol=1e-15)
    torch.testing.assert_close(out.models[0], theta + d.mean(0) - h1[0] / alpha,
                               rtol=0, atol=1e-15)


class _OneModel:
    """An engine of one linear model whose clients all hold the same full batch."""

    def __init__(self, model, x, y, cfg):
        self.model, self.x, self.y, self.cfg = model, x, y, cfg

    def train(self, round_, jobs, corrections=None, rule=None):
        rule = rule or LocalRule()
        for j, (c, start) in enumerate(jobs):
            delta, loss, steps = local_train(
                self.model, start, self.x, self.y, torch.arange(len(self.y)),
                rule.config(self.cfg), torch.Generator().manual_seed(0), prox_mu=rule.mu,
                correction=None if corrections is None else corrections[j])
            yield Update(c, delta, len(self.y), loss, steps)


def test_ditto_personal_steps_by_hand_on_a_linear_model():
    """v <- v - lr (grad F(v) + lam (v - w)) for two full-batch steps, w the cluster model
    the client started from (not v's own start), the store row updated, others not."""
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(6, 3)), np.array([0, 1, 1, 0, 1, 0])
    W0, b0 = rng.normal(size=(2, 3)), rng.normal(size=2)  # the personal model v
    Ww, bw = rng.normal(size=(2, 3)), rng.normal(size=2)  # the cluster model w
    model = FlatModel(nn.Linear(3, 2).double())
    cfg = load_config(None, ["client.optimizer=sgd", "client.lr=0.3", "client.batch_size=6",
                             "client.local_epochs=2"]).client
    engine = _OneModel(model, torch.from_numpy(X), torch.from_numpy(Y), cfg)
    w = torch.cat([torch.from_numpy(Ww).flatten(), torch.from_numpy(bw)])
    v0 = torch.cat([torch.from_numpy(W0).flatten(), torch.from_numpy(b0)])
    lam = 0.7
    ditto = Ditto(num_clients=3, params=8, lam=lam)
    state = ditto.start(new_state(w, 3), 1, engine, [(2, w)], np.array([0])).state
    assert torch.equal(state.clients[KEY], w.expand(3, -1))  # personal models start at w
    write(state.clients[KEY], [2], v0[None])
    kept = RoundUpdates.of([Update(2, torch.zeros_like(w), 6, 0.0, 1)])
    state, same = ditto.before_step(state, 1, engine, kept, [w])
    assert same is kept and not kept.deltas.any()  # the cluster update is untouched
    W, b = W0.copy(), b0.copy()
    for _ in range(2):
        gW, gb = softmax_ce_grad(W, b, X, Y)
        W, b = W - 0.3 * (gW + lam * (W - Ww)), b - 0.3 * (gb + lam * (b - bw))
    # float64; lam (v - v0) + lam (v0 - w) for lam (v - w): a few ulps of the values
    np.testing.assert_allclose(state.clients[KEY][2].numpy(),
                               np.concatenate([W.flatten(), b]), rtol=1e-12, atol=1e-14)
    assert torch.equal(state.clients[KEY][:2], w.expand(2, -1))
    assert torch.equal(ditto.personal(state, 1, engine, [2])(2), state.clients[KEY][2])


def test_frozen_parameters_keep_their_start_values_exactly():
    torch.manual_seed(0)
    model = FlatModel(nn.Linear(5, 3))
    cfg = load_config(None, ["client.optimizer=adam", "client.batch_size=8",
                             "client.weight_decay=0.1"]).client
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    start = torch.randn(model.numel)
    trainable = torch.zeros(model.num_params)
    trainable[15:] = 1  # the bias only
    delta, _, steps = local_train(model, start, x, y, torch.arange(32), cfg,
                                  torch.Generator().manual_seed(0), trainable=trainable)
    assert steps == 4 and not delta[:15].any() and delta[15:].abs().min() > 0


@pytest.mark.slow  # the vmap engine takes ~10 s on CPU here
def test_vmap_engine_follows_the_sequential_one_under_a_rule():
    """Frozen entries, another epoch count, another batch order and a proximal weight."""
    over = ["data.num_clients=6", "run.threads=1", "run.engine=sequential", "data.augment=false",
            "client.optimizer=sgd", "client.lr=0.05", "client.batch_size=64"]
    cfg = load_config(None, over)
    ctx, seq = prepare(cfg)
    start = ctx.model.vector()
    p = ctx.model.num_params
    mask = torch.zeros(p)
    mask[: p // 2] = 1
    rule = LocalRule(mu=0.3, trainable=mask, epochs=2, stream=5)
    jobs = [(c, start) for c in range(2)]
    want = list(seq.train(1, jobs, None, rule))
    plain = list(seq.train(1, jobs))
    got = list(VmapEngine(ctx.federation, ctx.model, cfg.client, cfg.seed).train(1, jobs, None,
                                                                                  rule))
    for a, b, c in zip(got, want, plain, strict=True):
        assert a.steps == b.steps == 2 * c.steps
        assert not a.delta[p // 2:p].any() and not b.delta[p // 2:p].any()
        # the same steps summed in another order (test_fedprox.py's tolerance)
        assert (a.delta - b.delta).norm() < 1e-4 * b.delta.norm()


@pytest.mark.parametrize("name", ["fedper", "fedrep", "local", "fedbn"])
def test_a_clients_own_layers_stay_out_of_the_cluster_model(name):
    """(FedBN: BatchNorm weights and running statistics.)"""
    model = ["model.name=test-bn-cnn"] if name == "fedbn" else []
    cfg = load_config(None, [*RUN, f"algorithm.name={name}", "server.clients_per_round=0.5",
                             "cluster.k=1", *model])
    run = build(cfg)
    state = initial_state(run)
    init = state.models[0].clone()
    own = local_entries(cfg, run.context.model)
    if name == "fedbn":  # weight, bias, running mean and variance of 4 channels
        assert int(own.sum()) == 16 and own[run.context.model.num_params:].all()
    state, result = run.rounds(state, 1, CallbackList([]), Profiler())
    sampled = [c.id for c in result.clients]
    store = state.clients[KEY]
    others = sorted(set(range(6)) - set(sampled))
    assert torch.equal(state.models[0][own], init[own])  # the cluster's copy never moves
    assert not torch.equal(state.models[0][~own], init[~own]) or name == "local"
    assert all(not torch.equal(store[c], init[own]) for c in sampled)
    assert all(torch.equal(store[c], init[own]) for c in others)
    personal = result.to_json()["personal_clients"]
    assert set(map(int, personal)) <= set(range(6)) and len(personal) >= len(sampled)


@pytest.mark.parametrize("name", ["feddyn", "ditto", "local", "finetune", "fedper", "fedrep",
                                  "fedbn"])
def test_every_algorithm_runs_on_the_default_digits_run(name):
    model = ["model.name=test-bn-cnn"] if name == "fedbn" else []
    s = run_federation(load_config(None, [*RUN, f"algorithm.name={name}", *model]), [])
    assert s.round == 2 and torch.isfinite(s.models).all()
    record = s.final.to_json()
    if name != "feddyn":  # personalised: every evaluated client's own model
        own = record["personal_clients"]
        assert len(own) >= 1 and 0 < record["personal_accuracy"] <= 1
        assert all(0 <= v["personal"] <= 1 for v in own.values())


@pytest.mark.slow
def test_personalised_methods_beat_fedavg_on_two_class_clients():
    """20 clients of 2 shards (about 2 classes) each: each client's own model beats the
    FedAvg model on its eval set by a wide margin (published tables: tens of points)."""
    base = ["rounds=5", "data.num_clients=20", "data.partition=shards", "cluster.k=1",
            "client.batch_size=10", "run.threads=1", "run.workers=1"]
    fedavg = run_federation(load_config(None, base), []).final.to_json()
    for name in ("ditto", "fedrep", "finetune"):
        own = run_federation(load_config(None, [*base, f"algorithm.name={name}"]),
                             []).final.to_json()
        assert own["personal_client_mean"] > fedavg["client_accuracy_mean"] + 0.15, name


def test_the_algorithm_sections_checks():
    with pytest.raises(ConfigError, match="server.optimizer = \"fedavg\""):
        load_config(None, ["algorithm.name=feddyn", "server.optimizer=fedadam"])
    with pytest.raises(ConfigError, match="algorithm.alpha = 0"):
        load_config(None, ["algorithm.alpha=0"])
    cfg = load_config(None, ["algorithm.name=feddyn", "algorithm.alpha=0.1"])
    assert cfg.algorithm.prox_mu == 0.1 and not cfg.algorithm.personal
    torch.manual_seed(0)
    model = FlatModel(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))
    fedper = load_config(None, ["algorithm.name=fedper"])
    assert local_entries(fedper, model).nonzero().flatten().tolist() == list(range(15, 23))
    first = load_config(None, ["algorithm.name=fedrep", "algorithm.head=['0']"])
    assert local_entries(first, model).nonzero().flatten().tolist() == list(range(15))
    with pytest.raises(ConfigError, match="'head' names no parameter.*'0', '2'"):
        local_entries(load_config(None, ["algorithm.name=fedper", "algorithm.head=['head']"]),
                      model)
    with pytest.raises(ConfigError, match="keeps every parameter local"):
        local_entries(load_config(None, ["algorithm.name=fedper", "algorithm.head=['0', '2']"]),
                      model)
    with pytest.raises(ConfigError, match="no BatchNorm"):
        local_entries(load_config(None, ["algorithm.name=fedbn"]), model)


def test_batched_personal_evaluation_equals_one_client_at_a_time():
    """engine.evaluate_own (one call for every client, each with its own vector) gives each
    client exactly what evaluate_clients(its vector, [it]) gives, on one worker or two."""
    for workers in (1, 2):
        cfg = load_config(None, [*RUN, "run.engine=sequential", f"run.workers={workers}"])
        ctx, engine = prepare(cfg)
        g = torch.Generator().manual_seed(workers)
        base = ctx.model.vector()
        own = {c: base + 0.3 * torch.randn(base.shape, generator=g) for c in range(6)}
        clients = [4, 0, 5, 2]
        asked: list[int] = []
        batched = engine.evaluate_own(clients, lambda c, a=asked, o=own: a.append(c) or o[c])
        single = [engine.evaluate_clients(own[c], [c])[0] for c in clients]
        assert batched == single and sorted(asked) == sorted(clients)
        assert len({s.correct for s in batched}) > 1 and all(s.n for s in batched)
        vm = VmapEngine(ctx.federation, ctx.model, cfg.client, cfg.seed)
        assert vm.evaluate_own(clients, own.__getitem__) == single
