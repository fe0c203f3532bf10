"""fl/robust.py: closed-form cases, and agreement with independent numpy/scipy versions of
the same rules on random inputs (even and odd row counts, many ties)."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.stats import trim_mean

from fedcluster.fl.robust import (
    Rule,
    bulyan,
    coordinate_median,
    group_targets,
    krum,
    nearest_neighbor_mixing,
    norm_clip,
    trimmed_mean,
)


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_closed_form_cases():
    assert coordinate_median(t([[1, 5], [2, -1], [10, 0]])).tolist() == [2, 0]
    assert coordinate_median(t([[1], [2], [4], [100]])).tolist() == [3]  # (2 + 4) / 2
    assert trimmed_mean(t([[1], [2], [3], [100]]), 0.25).tolist() == [2.5]
    assert trimmed_mean(t([[1], [2], [3], [100]]), 0.2).tolist() == [26.5]  # floor(0.8) = 0
    x = t([[0.0], [0.1], [0.2], [100.0]])
    # f = 0: each row's 2 nearest: 0 -> .01 + .04, .1 -> .01 + .01, .2 -> .01 + .04
    assert krum(x, 0).tolist() == [0.1]
    assert krum(x, 0, 3).item() == pytest.approx(0.1, abs=1e-15)  # rows .1, 0, .2
    # n = 7, f = 1: theta = 5 rows picked (the outliers last), beta = 3 nearest the median
    y = t([[0.0], [1.0], [2.0], [3.0], [4.0], [50.0], [-60.0]])
    assert bulyan(y, 1).tolist() == [2.0]
    clipped = norm_clip(t([[3, 4], [0.3, 0.4]]), 1.0)
    assert torch.allclose(clipped, t([[0.6, 0.8], [0.3, 0.4]]), rtol=1e-15)
    # f = 1: each row's 3 nearest, itself included; 100's are 100, 2, 1
    assert nearest_neighbor_mixing(t([[0], [1], [2], [100]]), 1).flatten().tolist() == [
        1.0, 1.0, 1.0, pytest.approx(103 / 3, rel=1e-15)]
    # a tie (0 is as far from 1 as from -1): the lower index
    assert nearest_neighbor_mixing(t([[0], [1], [-1]]), 1).flatten().tolist() == [
        0.5, 0.5, -0.5]
    assert nearest_neighbor_mixing(t([[0], [1], [5]]), 0).flatten().tolist() == [2, 2, 2]


def test_mixing_before_a_rule_removes_the_pull_of_an_attacker_on_heterogeneous_rows():
    # four honest clients with different updates (mean 1.5) and one far attacker
    x = t([[-30], [0], [1], [2], [3]])
    # each rule alone is pulled towards the attacker: the median and the trimmed mean
    # move one rank down, to 1; Krum (f = 1) picks 1 (scores 5, 2, 2, 5; ties: lower index)
    # nnm (f = 1): each honest row's 4 nearest are the 4 honest rows: mean 1.5 (exact);
    # the attacker's are itself and 0, 1, 2: -6.75, which every rule then outvotes
    for name in ("median", "trimmed-mean", "krum", "multi-krum"):
        plain = Rule(name, trim=0.2, byzantine=1)
        mixed = Rule(name, trim=0.2, byzantine=1, mixing="nnm")
        assert plain.apply(x).tolist() == ([1.0] if name != "multi-krum" else [1.5]), name
        assert mixed.apply(x).tolist() == [1.5], name
    assert nearest_neighbor_mixing(x, 1).flatten().tolist() == [-6.75, 1.5, 1.5, 1.5, 1.5]
    # a cluster told f = 3 among 4 rows mixes with f' = (4 - 1) // 2 = 1 (3 nearest)
    y = t([[0], [1], [2], [100]])
    assert Rule("median", byzantine=3, mixing="nnm").apply(y).tolist() == [1.0]


def ref_krum(x, f, m):
    n = len(x)
    d = cdist(x, x, "sqeuclidean")
    scores = np.array([np.sort(np.delete(d[i], i))[:n - f - 2].sum() for i in range(n)])
    return x[np.argsort(scores, kind="stable")[:m]].mean(axis=0)


def ref_bulyan(x, f):
    left, picked = list(range(len(x))), []
    while len(picked) < len(x) - 2 * f:
        sub = x[left]
        d = cdist(sub, sub, "sqeuclidean")
        near = max(len(left) - f - 2, 0)
        scores = [np.sort(np.delete(d[i], i))[:near].sum() for i in range(len(left))]
        picked.append(left.pop(int(np.argsort(scores, kind="stable")[0])))
    chosen = x[picked]
    med = np.median(chosen, axis=0)
    beta = len(picked) - 2 * f
    out = np.empty(x.shape[1])
    for j in range(x.shape[1]):
        nearest = np.argsort(np.abs(chosen[:, j] - med[j]), kind="stable")[:beta]
        out[j] = chosen[nearest, j].mean()
    return out


@pytest.mark.parametrize("m", [7, 8, 11, 12])
@pytest.mark.parametrize("ties", [False, True])
def test_rules_agree_with_numpy_and_scipy(m, ties):
    rng = np.random.default_rng(m * 2 + ties)
    x = rng.integers(-3, 4, size=(m, 9)).astype(float) if ties else rng.normal(size=(m, 9))
    x[0] *= 50  # an outlier
    xt = torch.from_numpy(x)
    # sums of a few float64 values in another order: within a few ulps
    close = dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(coordinate_median(xt).numpy(), np.median(x, axis=0), **close)
    for beta in (0.0, 0.1, 0.25, 0.49):
        np.testing.assert_allclose(trimmed_mean(xt, beta).numpy(),
                                   trim_mean(x, beta, axis=0), **close)
    for f in range(0, (m - 3) // 2 + 1):
        for k in (1, 2, m - f):
            np.testing.assert_allclose(krum(xt, f, k).numpy(), ref_krum(x, f, k), **close)
    for f in range(0, (m - 3) // 4 + 1):
        np.testing.assert_allclose(bulyan(xt, f).numpy(), ref_bulyan(x, f), **close)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(norm_clip(xt, 2.0).numpy(),
                               x * np.minimum(1, 2.0 / norms), **close)
    # a sum of up to m rows (a matmul) over m - f: m roundings of the largest value
    mixed = dict(rtol=0, atol=m * np.finfo(float).eps * np.abs(x).max())
    for f in range(0, m):
        np.testing.assert_allclose(nearest_neighbor_mixing(xt, f).numpy(), ref_nnm(x, f),
                                   **mixed)


def ref_nnm(x, f):
    d = cdist(x, x, "sqeuclidean")
    return np.stack([x[np.argsort(d[i], kind="stable")[:len(x) - f]].mean(axis=0)
                     for i in range(len(x))])


def test_invalid_sizes_are_refused():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="n > 2f \\+ 2"):
        krum(x, 1)
    with pytest.raises(ValueError, match="4f \\+ 3"):
        bulyan(torch.zeros(6, 2), 1)
    with pytest.raises(ValueError, match="beta < 0.5"):
        trimmed_mean(x, 0.5)
    with pytest.raises(ValueError, match="0 <= f < n"):
        nearest_neighbor_mixing(x, 4)
    with pytest.raises(ValueError, match="unknown mixing"):
        Rule("median", mixing="bucketing")


def test_group_targets_apply_the_rule_per_group_and_fall_back_to_the_median():
    rows = t([[0], [1], [2], [90], [5], [7]])
    labels = torch.tensor([0, 0, 0, 0, 2, 2])
    targets, counts = group_targets(Rule("krum", byzantine=0), rows, labels, 3)
    assert counts.tolist() == [4, 0, 2]
    # group 0: krum over 4 rows; group 2 has 2 < 3 rows: their median; group 1 empty: 0
    assert targets.flatten().tolist() == [1.0, 0.0, 6.0]


def test_a_round_with_a_robust_rule_moves_the_model_to_the_rule_of_the_local_models():
    from fedcluster.build import build
    from fedcluster.callbacks import Callback
    from fedcluster.callbacks.base import CallbackList
    from fedcluster.config import load_config
    from fedcluster.loop import initial_state
    from fedcluster.profiling import Profiler

    class Deltas(Callback):
        rows: list = []

        def on_client_done(self, round_, update):
            self.rows.append(update.delta.clone())

    cases = [("median", [], coordinate_median), ("krum", [], lambda x: krum(x, 1)),
             ("median", ["server.mixing=nnm"],
              lambda x: coordinate_median(nearest_neighbor_mixing(x, 1)))]
    for name, more, rule in cases:
        run = build(load_config(None, ["data.num_clients=6", "run.threads=1", "run.workers=1",
                                       "cluster.k=1", f"server.aggregator={name}",
                                       "server.byzantine=1", *more]))
        state = initial_state(run)
        seen = Deltas()
        seen.rows = []
        new, _ = run.rounds(state, 1, CallbackList([seen]), Profiler())
        local = state.models[0].double() + torch.stack(seen.rows).double()
        want = rule(local)
        # the server takes the rule of the float32 local models: float32 rounding of
        # model + delta (and of a mean of two of them, or of a sum of 5 over 5 for nnm),
        # a few ulps of the largest value
        tol = 8 * torch.finfo(torch.float32).eps * float(want.abs().max())
        assert float((new.models[0].double() - want).abs().max()) <= tol, name


@pytest.mark.parametrize("override, message", [
    (["server.aggregator=krum", "server.byzantine=2"], "n > 2f \\+ 2"),
    (["server.aggregator=bulyan", "server.byzantine=1"], "n >= 4f \\+ 3"),
    (["server.trim=0.5"], "a fraction in \\[0, 0.5\\)"),
    (["server.aggregator=avg"], "server.aggregator"),
    (["server.mixing=nnm", "server.byzantine=1"], 'server.mixing = \'nnm\': expected "none" '
     'with server.aggregator = "mean"'),
    (["server.aggregator=median", "server.mixing=nnm"], "server.byzantine = 0: expected an "
     "integer >= 1 with server.mixing"),
    (["server.aggregator=median", "server.mixing=nnm", "server.byzantine=3"],
     "server.byzantine = 3: expected less than half of the n = 6 clients"),
    (["server.mixing=bucket"], "server.mixing"),
])
def test_rules_that_cannot_work_for_the_round_are_config_errors(override, message):
    from fedcluster.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=message):
        load_config(None, ["data.num_clients=6", *override])


def test_column_blocks_give_the_whole_sort(monkeypatch):
    import fedcluster.fl.robust as robust

    x = torch.from_numpy(np.random.default_rng(3).normal(size=(9, 23)))
    rules = [coordinate_median, lambda x: trimmed_mean(x, 0.2), lambda x: bulyan(x, 1),
             lambda x: krum(x, 2, 3)]
    whole = [rule(x) for rule in rules]
    monkeypatch.setattr(robust, "CHUNK", 4)  # 6 blocks, the last one of 3 columns
    blocks = [rule(x) for rule in rules]
    # the same values per column; a mean of up to 9 of them summed in another order
    # (strided blocks) differs by a few ulps of the largest
    tol = 9 * torch.finfo(torch.float64).eps * float(x.abs().max())
    assert all(float((a - b).abs().max()) <= tol for a, b in zip(whole, blocks, strict=True))
    assert torch.equal(whole[0], blocks[0])  # the median takes values, sums none but two
