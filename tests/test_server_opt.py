"""Server optimisers (fl/server_opt.py): each rule's first two steps computed by hand on
scalars, the state plumbing per cluster, fedavg equal to the plain server step bit for
bit, and every rule through a short run of the default config."""

import math

import pytest
import torch

from fedcluster.config import ConfigError, load_config
from fedcluster.fl.aggregate import server_step
from fedcluster.fl.server_opt import OPTIMIZERS, ServerOpt, apply, init_state, opened, step
from fedcluster.loop import run_federation

torch.set_num_threads(1)

X0, G1, G2 = [1.0, -2.0], [0.5, -1.0], [0.02, 0.3]  # the model and two pseudo-gradients
LR, B1, B2, TAU, MU = 0.1, 0.9, 0.99, 0.1, 0.8


def _two_steps(name: str) -> list[torch.Tensor]:
    opt = ServerOpt(name, momentum=MU, beta1=B1, beta2=B2, tau=TAU)
    x = torch.tensor(X0, dtype=torch.float64)
    state = init_state(opt, x)
    out = []
    for g in (G1, G2):
        x, state = step(x, torch.tensor(g, dtype=torch.float64), state, opt, LR)
        out.append(x)
    return out


def _adaptive_by_hand(x0: float, g1: float, g2: float, v_next) -> tuple[float, float]:
    """Two steps of Reddi et al.'s Algorithm 2 on one coordinate (m0 = 0, v0 = tau^2)."""
    m1 = (1 - B1) * g1
    v1 = v_next(TAU ** 2, g1)
    x1 = x0 + LR * m1 / (math.sqrt(v1) + TAU)
    m2 = B1 * m1 + (1 - B1) * g2
    v2 = v_next(v1, g2)
    x2 = x1 + LR * m2 / (math.sqrt(v2) + TAU)
    return x1, x2


def _yogi(v: float, g: float) -> float:
    s = (v > g * g) - (v < g * g)
    return v - (1 - B2) * g * g * s


V_RULES = {
    "fedadam": lambda v, g: B2 * v + (1 - B2) * g * g,
    "fedadagrad": lambda v, g: v + g * g,
    "fedyogi": _yogi,
}


@pytest.mark.parametrize("name", list(V_RULES))
def test_adaptive_first_two_steps_by_hand(name):
    x1, x2 = _two_steps(name)
    for i in range(2):
        h1, h2 = _adaptive_by_hand(X0[i], G1[i], G2[i], V_RULES[name])
        # float64 throughout; a handful of roundings of numbers of order 1
        assert x1[i].item() == pytest.approx(h1, rel=1e-14, abs=1e-14)
        assert x2[i].item() == pytest.approx(h2, rel=1e-14, abs=1e-14)


def test_yogi_takes_both_signs_and_differs_from_adam():
    # the hand-computed test's second step takes both branches of sign(v - g^2):
    # coordinate 0 has v1 = 0.01 + 0.01 * 0.25 > 0.02^2 (v shrinks by (1 - beta2) g^2),
    # coordinate 1 has v1 = 0.01 + 0.01 * 1 < 0.3^2 (v grows)
    assert _yogi(0.0125, 0.02) < 0.0125 and _yogi(0.02, 0.3) > 0.02
    assert not torch.equal(_two_steps("fedyogi")[1], _two_steps("fedadam")[1])


def test_fedavgm_two_steps_by_hand():
    x1, x2 = _two_steps("fedavgm")
    for i in range(2):
        m1 = G1[i]  # m0 = 0
        m2 = MU * m1 + G2[i]
        assert x1[i].item() == pytest.approx(X0[i] + LR * m1, rel=1e-15)
        assert x2[i].item() == pytest.approx(X0[i] + LR * m1 + LR * m2, rel=1e-14)


def test_fedavg_is_the_plain_server_step_bit_for_bit():
    gen = torch.Generator().manual_seed(0)
    models, targets = torch.randn(4, 1000, generator=gen), torch.randn(4, 1000, generator=gen)
    for lr in (1.0, 0.37):
        new, state = apply(models, targets, [0, 2, 3], {}, ServerOpt("fedavg"), lr)
        assert state == {}
        for j in (0, 2, 3):
            assert torch.equal(new[j], server_step(models[j], targets[j], lr))
        assert torch.equal(new[1], models[1])  # no update: kept


def test_state_per_cluster_idle_clusters_keep_theirs():
    opt = ServerOpt("fedadam", tau=0.1)
    models = torch.zeros(3, 2, dtype=torch.float64)
    targets = torch.tensor([[1.0, 1.0], [5.0, 5.0], [-1.0, 2.0]], dtype=torch.float64)
    new, state = apply(models, targets, [0, 2], {}, opt, 0.5)
    assert set(state) == {"m", "v"} and state["m"].shape == (3, 2)
    assert torch.equal(new[1], models[1])  # cluster 1 got nothing: model and state kept
    assert torch.equal(state["m"][1], torch.zeros(2, dtype=torch.float64))
    assert torch.equal(state["v"][1], torch.full((2,), 0.1 ** 2, dtype=torch.float64))
    # each active row is the one-cluster step of its own pseudo-gradient
    for j in (0, 2):
        one, st = step(models[j], targets[j] - models[j], init_state(opt, models[j]), opt, 0.5)
        assert torch.equal(new[j], one) and torch.equal(state["m"][j], st["m"])


def test_opened_clusters_copy_their_parents_state_and_broadcast_copies_cluster_0():
    state = {"m": torch.tensor([[1.0], [2.0]]), "v": torch.tensor([[3.0], [4.0]])}
    grown = opened(state, [1, 0])
    assert grown["m"].flatten().tolist() == [1.0, 2.0, 2.0, 1.0]
    assert grown["v"].flatten().tolist() == [3.0, 4.0, 4.0, 3.0]
    assert opened({}, [0]) == {}  # fedavg keeps no state
    opt = ServerOpt("fedavgm", momentum=0.5)
    new, st = apply(torch.zeros(3, 1), torch.ones(3, 1), [0], grown_m := {"m": grown["m"][:3]},
                    opt, 1.0, broadcast=True)
    want = 0.5 * grown_m["m"][0] + 1.0  # m <- 0.5 m + g, g = 1
    assert st["m"].flatten().tolist() == [want.item()] * 3
    assert new.flatten().tolist() == [want.item()] * 3


def test_buffers_take_the_mean_under_a_server_optimiser():
    opt = ServerOpt("fedadam", params=2)
    models = torch.zeros(1, 3)
    targets = torch.tensor([[1.0, -1.0, 7.0]])
    new, state = apply(models, targets, [0], {}, opt, 0.01)
    assert state["m"].shape == (1, 2)  # parameters only
    assert new[0, 2].item() == 7.0  # the buffer: the members' mean
    assert 0 < new[0, 0].item() <= 0.01 + 1e-7 and new[0, 1].item() < 0


def test_config_checks_the_hyper_parameters():
    cfg = load_config(None, ["server.optimizer=fedyogi", "server.beta2=0.5", "server.tau=0.01"])
    assert (cfg.server.optimizer, cfg.server.beta2, cfg.server.tau) == ("fedyogi", 0.5, 0.01)
    for bad in ("server.optimizer=sgd", "server.beta1=1", "server.beta2=-0.1", "server.tau=0",
                "server.momentum=1.5"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_config(None, [bad])


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimiser_runs_the_default_config(name):
    lr = "1.0" if name in ("fedavg", "fedavgm") else "0.03"
    over = ["rounds=2", "run.threads=1", "run.workers=1", f"server.optimizer={name}",
            f"server.lr={lr}", "server.momentum=0.5"]
    summary = run_federation(load_config(None, over), [])
    assert summary.round == 2 and torch.isfinite(summary.models).all()
    assert all(math.isfinite(r.loss) for r in summary.rounds)
