"""``data.eval_split = "per-client"``: each client's own samples cut into train and eval
parts (PFLlib's 75/25 protocol) instead of eval sets drawn from the dataset's test split."""

import math

import numpy as np
import pytest
import torch

from fedcluster import load_config
from fedcluster.config import ConfigError
from fedcluster.data import build_federation, load_dataset
from fedcluster.data.federation import Federation, own_eval_split
from fedcluster.data.partition import PartitionError
from fedcluster.loop import run_federation

PER_CLIENT = ["data.eval_split=per-client"]


def _both(overrides: list[str], seed: int = 0) -> tuple[Federation, Federation]:
    """The same federation with the dataset's eval split and with the per-client one."""
    cfg = load_config(None, overrides)
    per = load_config(None, [*overrides, *PER_CLIENT])
    ds = load_dataset(cfg.data)
    return build_federation(ds, cfg.data, seed), build_federation(ds, per.data, seed)


@pytest.mark.parametrize("overrides", [
    ["data.partition=dirichlet", "data.alpha=0.1"],
    ["data.partition=shards", "data.num_clients=8"],
    ["data.shift=rotate", "data.groups=2", "data.num_clients=6"],  # shifted group copies
])
def test_each_client_keeps_a_quarter_of_its_own_samples_for_eval(overrides):
    plain, per = _both(overrides)
    assert per.num_clients == plain.num_clients
    assert np.array_equal(per.groups, plain.groups)
    for c in range(per.num_clients):
        own = plain.train_idx[c]  # the partition over the training pool is the same
        train, ev = per.train_idx[c], per.eval_idx[c]
        held = np.setdiff1d(own, train)
        assert len(ev) == len(held) == math.ceil(len(own) / 4) >= 1
        assert len(train) == len(own) - len(ev) >= 1 and np.isin(train, own).all()
        # the eval rows are exactly the held-out training samples (disjoint from train)
        assert torch.equal(per.dataset.test_x[ev], plain.dataset.train_x[held])
        assert torch.equal(per.dataset.test_y[ev], plain.dataset.train_y[held])
    pooled = np.concatenate(per.eval_idx)
    assert len(np.unique(pooled)) == len(pooled) == len(per.dataset.test_y)


def test_the_cut_is_seeded():
    _, a = _both([])
    _, b = _both([])
    _, other = _both([], seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a.train_idx, b.train_idx, strict=True))
    assert torch.equal(a.dataset.test_x, b.dataset.test_x)
    assert not torch.equal(a.dataset.test_y, other.dataset.test_y)


def _toy(sizes: list[int]) -> Federation:
    ds = load_dataset(load_config(None, []).data)
    starts = np.cumsum([0, *sizes])
    parts = [np.arange(a, b) for a, b in zip(starts[:-1], starts[1:], strict=True)]
    return Federation(ds, parts, [np.zeros(0, dtype=np.int64)] * len(sizes))


def test_eval_sizes_round_up_like_train_test_split():
    """ceil(fraction x n), with 0.1 x 30 (3.0000000000000004 in floats) kept at 3;
    a client holding nothing (another site's under "local") stays empty."""
    fed = own_eval_split(_toy([30, 7, 2, 0]), 0.1, np.random.default_rng(0))
    assert [len(e) for e in fed.eval_idx] == [3, 1, 1, 0]
    assert [len(t) for t in fed.train_idx] == [27, 6, 1, 0]


@pytest.mark.parametrize(("sizes", "fraction", "named"), [
    ([5, 1, 9], 0.25, "client 1: 1"),  # no sample left for training
    ([5, 10], 0.9, "client 0: 5"),  # ceil(4.5) = 5: all of it would be eval
])
def test_a_client_left_without_train_or_eval_samples_is_refused(sizes, fraction, named):
    with pytest.raises(PartitionError, match=f"data.eval_fraction.*1 of {len(sizes)} clients"
                                             f".*{named}"):
        own_eval_split(_toy(sizes), fraction, np.random.default_rng(0))


@pytest.mark.parametrize("bad", ["data.eval_fraction=0", "data.eval_fraction=1",
                                 "data.eval_split=own"])
def test_bad_eval_settings_are_config_errors(bad):
    with pytest.raises(ConfigError, match=bad.split("=")[0]):
        load_config(None, [bad])


def test_a_run_trains_and_evaluates_each_client_on_its_own_parts():
    run = ["rounds=1", "data.num_clients=6", "run.threads=1", "run.workers=1",
           "algorithm.name=ditto"]
    plain, _ = _both(run)
    n = plain.train_sizes()
    s = run_federation(load_config(None, [*run, *PER_CLIENT]), [])
    record = s.final.to_json()
    assert s.round == 1 and torch.isfinite(s.models).all()
    assert 0 < record["personal_accuracy"] <= 1
    held = [math.ceil(x / 4) for x in n]
    assert {c["id"]: c["num_examples"] for c in record["clients"]} == {
        c: int(n[c]) - held[c] for c in range(6)}
    assert [c["eval_examples"] for c in record["clusters"]] == [
        sum(held[m] for m in c["members"]) for c in record["clusters"]]
