"""The client-state store (fl/client_state.py) and SCAFFOLD (fl/scaffold.py): one round on
a quadratic in closed form, the corrected local steps on a linear model by hand, the
vmap engine equal to the sequential one, runs, and the config's checks."""

import dataclasses

import numpy as np
import pytest
import torch
from _linear import softmax_ce_grad
from torch import nn

from fedcluster import load_config, prepare
from fedcluster.checkpoint import load_checkpoint, save_checkpoint
from fedcluster.config import ConfigError
from fedcluster.engines import VmapEngine
from fedcluster.fl.client import Update, local_train
from fedcluster.fl.client_state import client_store, here, keep_held, rows, write
from fedcluster.fl.flat import FlatModel
from fedcluster.fl.scaffold import KEY, Scaffold
from fedcluster.fl.server import RoundUpdates
from fedcluster.fl.server_opt import ServerOpt, apply
from fedcluster.fl.state import new_state
from fedcluster.loop import run_federation

torch.set_num_threads(1)


def test_a_small_store_is_in_memory_a_large_one_memory_mapped(tmp_path):
    state = new_state(torch.zeros(3), 5)
    state, small = client_store(state, "s", 5, 3, state.models[0], tmp_path)
    assert small.untyped_storage().filename is None and not small.any()
    state, big = client_store(state, "b", 5, 3, state.models[0], tmp_path, threshold=32)
    assert big.untyped_storage().filename is not None and not big.any()
    assert list(tmp_path.iterdir()) == []  # the mapping's file is unlinked at once
    write(big, [4, 1], torch.tensor([[1.0, 2, 3], [4, 5, 6]]))
    assert rows(big, [1, 4, 0]).tolist() == [[4, 5, 6], [1, 2, 3], [0, 0, 0]]
    assert client_store(state, "b", 5, 3, state.models[0])[1] is big  # found, not remade
    with pytest.raises(ValueError, match="expected"):
        client_store(state, "b", 6, 3, state.models[0])
    save_checkpoint(tmp_path, state)  # saved and read back like any state tensor
    assert torch.equal(load_checkpoint(tmp_path).clients["b"], big)


def test_one_scaffold_round_on_a_quadratic_in_closed_form():
    """f_i(y) = 1/2 ||y - a_i||^2: K corrected SGD steps y <- y - lr (y - a_i - c_i + c)
    give y_K = b_i + (1 - lr)^K (x - b_i) with b_i = a_i + c_i - c."""
    x = torch.tensor([1.0, -1.0], dtype=torch.float64)
    a = torch.tensor([[3.0, 0.0], [-1.0, 2.0], [0.5, 0.5]], dtype=torch.float64)
    lr, steps = 0.1, [4, 2, 0]  # the third client took no step
    sizes = np.array([10, 30, 20, 40])
    scaffold = Scaffold(sizes, params=2, lr=lr)
    state = new_state(x, 4)
    state.assignment[:] = [0, 0, 0, 0]  # all four are members: n_0 = 100
    state = scaffold.prepare(state)
    c_i0 = torch.tensor([[0.2, -0.1], [0.0, 0.3], [1.0, 1.0]], dtype=torch.float64)
    write(state.clients[KEY], [0, 1, 2], c_i0)
    c0 = torch.tensor([[0.05, 0.05]], dtype=torch.float64)
    state = dataclasses.replace(state, server_opt={KEY: c0.clone()})
    _, corr = scaffold.corrections(state, np.array([0, 1, 2]), np.array([0, 0, 0]))
    assert torch.equal(corr, c0 - c_i0)  # c - c_i
    deltas = []
    for i, k in enumerate(steps):
        b = a[i] + c_i0[i] - c0[0]
        deltas.append(b + (1 - lr) ** k * (x - b) - x)
    updates = RoundUpdates.of([Update(i, deltas[i], 10, 0.0, steps[i]) for i in range(3)])
    state = scaffold.update(state, updates, np.array([0, 0, 0]))
    want = c_i0.clone()
    for i in (0, 1):  # c_i+ = c_i - c + (x - y_i) / (K lr)
        want[i] = c_i0[i] - c0[0] - deltas[i] / (steps[i] * lr)
    got = state.clients[KEY]
    torch.testing.assert_close(got[:3], want, rtol=1e-14, atol=1e-15)
    assert torch.equal(got[2], c_i0[2]) and not got[3].any()  # no step; not sampled
    # c+ = c + sum_i n_i (c_i+ - c_i) / n_0: the size-weighted mean of the members' c_i
    weighted = 10 * (want[0] - c_i0[0]) + 30 * (want[1] - c_i0[1])  # client 2: no change
    torch.testing.assert_close(state.server_opt[KEY][0], c0[0] + weighted / 100,
                               rtol=1e-14, atol=1e-15)
    # one step (K = 1) from c = c_i = 0 estimates the gradient at x exactly: x - a_i
    fresh = scaffold.prepare(new_state(x, 4))
    one = RoundUpdates.of([Update(0, -lr * (x - a[0]), 10, 0.0, 1)])
    fresh = scaffold.update(fresh, one, np.array([0]))
    torch.testing.assert_close(fresh.clients[KEY][0], x - a[0], rtol=1e-14, atol=1e-15)


def test_corrected_local_steps_by_hand_on_a_linear_model():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(4, 3)), np.array([1, 0, 1, 1])
    W0, b0 = rng.normal(size=(2, 3)), rng.normal(size=2)
    corr = rng.normal(size=8)
    model = FlatModel(nn.Linear(3, 2).double())
    start = torch.cat([torch.from_numpy(W0).flatten(), torch.from_numpy(b0)])
    cfg = load_config(None, ["client.optimizer=sgd", "client.lr=0.2", "client.batch_size=4",
                             "client.local_epochs=2"]).client
    delta, _, steps = local_train(model, start, torch.from_numpy(X), torch.from_numpy(Y),
                                  torch.arange(4), cfg, torch.Generator().manual_seed(0),
                                  correction=torch.from_numpy(corr))
    W, b = W0.copy(), b0.copy()
    for _ in range(2):  # y <- y - lr (grad + c - c_i)
        gW, gb = softmax_ce_grad(W, b, X, Y)
        W, b = W - 0.2 * (gW + corr[:6].reshape(2, 3)), b - 0.2 * (gb + corr[6:])
    assert steps == 2
    np.testing.assert_allclose(delta.numpy(), np.concatenate([W.flatten(), b]) - start.numpy(),
                               rtol=1e-12, atol=1e-14)


def test_vmap_engine_gives_the_sequential_engines_corrected_updates():
    over = ["data.num_clients=6", "run.threads=1", "run.engine=sequential", "data.augment=false",
            "client.optimizer=sgd", "client.lr=0.05", "algorithm.name=scaffold"]
    cfg = load_config(None, over)
    ctx, seq = prepare(cfg)
    start = ctx.model.vector()
    g = torch.Generator().manual_seed(3)
    jobs = [(c, start + 0.01 * torch.randn(start.shape, generator=g)) for c in range(6)]
    corr = 0.05 * torch.randn(6, ctx.model.num_params, generator=g)
    expected = list(seq.train(1, jobs, corr))
    plain = list(seq.train(1, jobs))
    vm = VmapEngine(ctx.federation, ctx.model, cfg.client, cfg.seed, chunk=4)
    for a, b, c in zip(vm.train(1, jobs, corr), expected, plain, strict=True):
        assert a.client == b.client and a.steps == b.steps > 1
        torch.testing.assert_close(a.delta, b.delta, rtol=1e-4, atol=1e-6)  # test_engines'
        assert (b.delta - c.delta).norm() > 1e-2 * c.delta.norm()  # the correction matters


def test_other_per_cluster_state_passes_through_the_server_optimiser():
    state = {"m": torch.zeros(2, 1), "v": torch.full((2, 1), 1e-6), KEY: torch.tensor([[1.0],
                                                                                       [2.0]])}
    _, out = apply(torch.zeros(2, 1), torch.ones(2, 1), [0, 1], state, ServerOpt("fedadam"), 0.1)
    assert out[KEY] is state[KEY] and set(out) == {"m", "v", KEY}
    _, out = apply(torch.zeros(2, 1), torch.ones(2, 1), [0], {KEY: state[KEY]},
                   ServerOpt("fedavg"), 1.0, broadcast=True)
    assert out[KEY].flatten().tolist() == [1.0, 1.0]


SGD = ["client.optimizer=sgd", "client.lr=0.1", "algorithm.name=scaffold"]


@pytest.mark.parametrize("extra", [[], ["cluster.method=cfl", "cluster.cfl_eps1=5",
                                        "cluster.cfl_eps2=0.01", "server.optimizer=fedadam",
                                        "server.lr=0.03"]])
def test_scaffold_runs_with_clustering_and_a_finite_model(extra):
    over = ["rounds=3", "data.num_clients=8", "run.threads=1", "run.workers=1",
            "server.clients_per_round=0.5", *SGD, *extra]
    s = run_federation(load_config(None, over), [])
    assert torch.isfinite(s.models).all()


def test_scaffold_is_checked_at_load():
    with pytest.raises(ConfigError, match='client.optimizer = "sgd"'):
        load_config(None, ["algorithm.name=scaffold"])  # adam by default
    with pytest.raises(ConfigError, match="client.momentum = 0"):
        load_config(None, [*SGD, "client.momentum=0.9"])
    with pytest.raises(ConfigError, match='data.partition = "local"'):
        load_config(None, [*SGD, "data.partition=local"])


def test_scaffold_removes_the_client_drift_that_biases_fedavg():
    """Two clients, f_i(y) = 1/2 (y - a_i)' H_i (y - a_i) with different diagonal curvatures
    H_i, K = 20 full-gradient local steps. FedAvg's fixed point is, per coordinate,
    sum (1 - q_i) a_i / sum (1 - q_i) with q_i = (1 - lr h_i)^K: not the optimum
    sum h_i a_i / sum h_i of f_1 + f_2 (client drift). SCAFFOLD's is the optimum."""
    h = torch.tensor([[1.0, 10.0], [10.0, 1.0]], dtype=torch.float64)
    a = torch.tensor([[0.0, 2.0], [1.0, -1.0]], dtype=torch.float64)
    lr, K, clients = 0.05, 20, np.array([0, 1])
    optimum = (h * a).sum(0) / h.sum(0)
    q = (1 - lr * h) ** K
    biased = ((1 - q) * a).sum(0) / (1 - q).sum(0)
    assert (biased - optimum).abs().max() > 0.25  # the drift is large here

    def deltas(x: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        y = x.expand(2, 2).clone()
        for _ in range(K):  # y <- y - lr (grad f_i(y) - c_i + c)
            y -= lr * (h * (y - a) + corr)
        return y - x

    scaffold = Scaffold(np.array([7, 7]), params=2, lr=lr)
    state = new_state(torch.zeros(2, dtype=torch.float64), 2)
    state.assignment[:] = 0
    plain = state.models[0].clone()
    for _ in range(300):
        state, corr = scaffold.corrections(state, clients, np.zeros(2, dtype=np.int64))
        d = deltas(state.models[0], corr)
        updates = RoundUpdates.of([Update(i, d[i], 7, 0.0, K) for i in clients])
        state = dataclasses.replace(state, models=state.models + d.mean(0))  # server.lr = 1
        state = scaffold.update(state, updates, np.zeros(2, dtype=np.int64))
        plain = plain + deltas(plain, torch.zeros(2, 2, dtype=torch.float64)).mean(0)
    torch.testing.assert_close(plain, biased, rtol=0, atol=1e-10)  # FedAvg: the biased point
    torch.testing.assert_close(state.models[0], optimum, rtol=0, atol=1e-10)  # SCAFFOLD: optimum
    # at the optimum each c_i is client i's gradient there, and c their mean
    grads = h * (optimum - a)
    torch.testing.assert_close(state.clients[KEY], grads, rtol=0, atol=1e-9)
    torch.testing.assert_close(state.server_opt[KEY][0], grads.mean(0), rtol=0, atol=1e-9)


def test_a_process_holds_and_serves_only_its_clients_rows(tmp_path):
    """A store made for the clients held here has their rows only; reading or writing
    another process's client is refused; a whole store (a checkpoint's) keeps the held
    rows; SCAFFOLD's corrections for clients held elsewhere are c_k alone."""
    held = np.array([1, 3, 4])
    state = new_state(torch.zeros(2), 5)
    state, store = client_store(state, "s", 5, 2, state.models[0], held=held)
    assert store.shape == (3, 2)
    write(store, [4, 1], torch.tensor([[4.0, 4], [1, 1]]), held)
    assert rows(store, [1, 4, 3], held).tolist() == [[1, 1], [4, 4], [0, 0]]
    with pytest.raises(LookupError, match=r"client\(s\) \[0, 2\].*another process"):
        rows(store, [0, 3, 2], held)
    with pytest.raises(LookupError, match="another process"):
        write(store, [2], torch.ones(1, 2), held)
    whole = dataclasses.replace(state, clients={"s": torch.arange(10.0).view(5, 2)})
    assert keep_held(whole, held).clients["s"].tolist() == [[2, 3], [6, 7], [8, 9]]
    assert keep_held(whole, None) is whole
    assert not here([0, 1], np.array([], dtype=np.int64)).any()  # a rank holding no client
    scaffold = Scaffold(np.full(5, 10), params=2, lr=0.1, held=held)
    s = scaffold.prepare(new_state(torch.zeros(2), 5))
    write(s.clients[KEY], [3], torch.tensor([[1.0, 2.0]]), held)
    s = dataclasses.replace(s, server_opt={KEY: torch.tensor([[0.5, 0.5]])})
    _, corr = scaffold.corrections(s, np.array([0, 3]), np.array([0, 0]))
    assert corr.tolist() == [[0.5, 0.5], [-0.5, -1.5]]


def test_the_cluster_variate_is_the_mean_of_all_clients_under_partial_participation():
    """With one cluster, c = sum_i n_i c_i / sum_i n_i over all N clients, placed or not (the
    paper's c <- c + |S|/N mean dc_i, size-weighted), round after round while clients join."""
    sizes = np.array([10, 30, 20, 40])
    scaffold = Scaffold(sizes, params=2, lr=0.1)
    state = scaffold.prepare(new_state(torch.zeros(2, dtype=torch.float64), 4))
    g = torch.Generator().manual_seed(0)
    for sampled in ([0, 1], [1, 2], [3, 0, 2]):
        clients = np.array(sampled)
        updates = RoundUpdates.of([Update(int(i), torch.randn(2, generator=g,
                                                             dtype=torch.float64), 5, 0.0, 3)
                                   for i in clients])
        state.assignment[clients] = 0  # placed by the round's server step, before update
        state = scaffold.update(state, updates, np.zeros(len(clients), dtype=np.int64))
        n = torch.from_numpy(sizes).double()
        mean = (n[:, None] * state.clients[KEY]).sum(0) / n.sum()
        torch.testing.assert_close(state.server_opt[KEY][0], mean, rtol=1e-12, atol=1e-14)
