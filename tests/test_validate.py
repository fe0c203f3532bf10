"""Client faults: a client whose training raises, or whose update is non-finite, of the
wrong size or too long, is left out of the round (fl/validate.py), and a round with too
few accepted updates makes no model step."""

import math

import numpy as np
import pytest
import torch

import fedcluster.engines.sequential as sequential
from fedcluster.build import build
from fedcluster.callbacks import Callback
from fedcluster.callbacks.base import CallbackList
from fedcluster.config import ConfigError, load_config
from fedcluster.engines.vmap import VmapEngine
from fedcluster.fl.client import Update
from fedcluster.fl.validate import TooFewUpdates, check_updates, screen
from fedcluster.loop import initial_state
from fedcluster.profiling import Profiler

torch.set_num_threads(1)

BASE = ["rounds=2", "data.num_clients=6", "run.threads=1", "run.workers=1", "cluster.k=1"]
BAD = 3  # the failing client


def test_each_reason_is_found_in_order():
    deltas = torch.tensor([[3.0, 4.0], [float("nan"), 0.0], [0.0, float("inf")], [30.0, 40.0],
                           [1.0, 0.0], [float("nan"), 1.0]])
    errors = [None, None, None, None, None, "RuntimeError: boom"]
    v = check_updates(deltas, errors, max_norm=10.0)
    assert v.keep.tolist() == [True, False, False, False, True, False]
    assert v.reasons == {1: "non-finite", 2: "non-finite",
                         3: "norm 50 > server.max_update_norm = 10",
                         5: "error: RuntimeError: boom"}
    assert v.kept == 2 and v.scale == {}
    no_bound = check_updates(deltas, errors)
    assert no_bound.keep.tolist() == [True, False, False, True, True, False]


def test_clipping_keeps_a_long_update_scaled_to_the_bound():
    deltas = torch.tensor([[3.0, 4.0], [30.0, 40.0], [0.0, 20.0]])
    v = check_updates(deltas, [None] * 3, max_norm=10.0, clip=True)
    assert v.keep.all() and v.reasons == {}
    assert v.scale == pytest.approx({1: 10 / 50, 2: 10 / 20}, rel=1e-15)


def test_a_wrong_sized_update_becomes_a_failed_one():
    like = torch.ones(5)
    bad = screen(Update(1, torch.ones(4), 10, 0.5, 2), like)
    assert bad.error == "wrong size: (4,) values, expected (5,)"
    assert torch.equal(bad.delta, torch.zeros(5))
    ok = Update(1, torch.ones(5), 10, 0.5, 2)
    assert screen(ok, like) is ok
    failed = screen(Update(1, torch.ones(5), 10, math.nan, 0, error="E: x"), like)
    assert failed.error == "E: x" and torch.equal(failed.delta, torch.zeros(5))


class Updates(Callback):
    def __init__(self) -> None:
        self.updates: list[Update] = []

    def on_client_done(self, round_, update):
        self.updates.append(Update(update.client, update.delta.clone(), update.num_examples,
                                   update.train_loss, update.steps, error=update.error))


def _break(monkeypatch, run, how: str) -> None:
    """Make client BAD's training raise (``how = "raise"``) or return NaN."""
    bad_idx = run.context.federation.train_idx[BAD]
    train = sequential.local_train

    def local_train(model, start, x, y, idx, *args, **kwargs):
        if len(idx) == len(bad_idx) and np.array_equal(idx.cpu().numpy(), bad_idx):
            if how == "raise":
                raise RuntimeError("boom")
            delta, loss, steps = train(model, start, x, y, idx, *args, **kwargs)
            return torch.full_like(delta, float("nan")), loss, steps
        return train(model, start, x, y, idx, *args, **kwargs)

    monkeypatch.setattr(sequential, "local_train", local_train)
    chunk = VmapEngine._train_chunk

    def train_chunk(self, round_, jobs, *args, **kwargs):
        if how == "raise" and any(c == BAD for c, _ in jobs):
            raise RuntimeError("boom")
        return chunk(self, round_, jobs, *args, **kwargs)

    monkeypatch.setattr(VmapEngine, "_train_chunk", train_chunk)


def _first_round(overrides, monkeypatch=None, how="raise"):
    run = build(load_config(None, [*BASE, *overrides]))
    if monkeypatch is not None:
        _break(monkeypatch, run, how)
    state = initial_state(run)
    seen = Updates()
    new, result = run.rounds(state, 1, CallbackList([seen]), Profiler())
    return state, new, result, seen.updates


@pytest.mark.parametrize("engine", ["sequential", "vmap"])
def test_a_failing_client_is_left_out_and_the_others_averaged(engine, monkeypatch):
    state, new, result, updates = _first_round([f"run.engine={engine}"], monkeypatch)
    assert result.rejected == {BAD: "error: RuntimeError: boom"}
    assert not result.skipped and len(updates) == 6
    others = [u for u in updates if u.client != BAD]
    assert all(u.error is None for u in others) and len(others) == 5
    w = torch.tensor([u.num_examples for u in others], dtype=torch.float64)
    mean = (w / w.sum()) @ torch.stack([u.delta for u in others]).double()
    want = state.models[0].double() + mean  # FedAvg, server.lr = 1, one cluster
    # float32 rounding of the mean and of the sum with the model: a few ulps of the largest
    tol = 4 * torch.finfo(torch.float32).eps * float(want.abs().max())
    assert float((new.models[0].double() - want).abs().max()) <= tol


@pytest.mark.parametrize("k", [1, 2])
def test_a_nan_update_never_reaches_the_models(k, monkeypatch):
    _, new, result, _ = _first_round([f"cluster.k={k}"], monkeypatch, how="nan")
    assert result.rejected == {BAD: "non-finite"}
    assert torch.isfinite(new.models).all()
    assert math.isfinite(result.accuracy)
    record = result.to_json()
    assert record["rejected"] == {str(BAD): "non-finite"} and record["skipped"] is False


def test_too_few_accepted_updates_make_no_model_step(monkeypatch):
    state, new, result, _ = _first_round(["server.min_clients=6"], monkeypatch)
    assert result.skipped and result.to_json()["skipped"] is True
    assert torch.equal(new.models, state.models)
    assert np.array_equal(new.assignment, state.assignment) and new.round == 1
    with pytest.raises(TooFewUpdates, match="1 client update|5 client update"):
        _first_round(["server.min_clients=6", "server.on_too_few=abort"], monkeypatch)


def test_updates_longer_than_the_bound_are_rejected_or_clipped():
    _, new, result, _ = _first_round(["server.max_update_norm=1e-6"])
    assert sorted(result.rejected) == list(range(6)) and result.skipped
    assert all(why.startswith("norm ") for why in result.rejected.values())
    bound = 0.01
    state, new, result, _ = _first_round([f"server.max_update_norm={bound}",
                                          "server.clip_updates=true"])
    assert result.clipped == list(range(6)) and not result.rejected
    # a weighted mean of vectors no longer than the bound is no longer than it
    moved = float(torch.linalg.vector_norm((new.models[0] - state.models[0]).double()))
    assert 0 < moved <= bound * (1 + 1e-5)


@pytest.mark.parametrize("override, message", [
    (["server.clip_updates=true"], "server.max_update_norm > 0"),
    (["server.max_update_norm=-1"], "a number >= 0"),
    (["server.min_clients=0"], "an integer >= 1"),
    (["server.min_clients=7"], "at most the clients per round"),
])
def test_bad_fault_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [*BASE, *override])


def test_a_client_without_a_step_is_left_out_by_the_selecting_rules_only():
    deltas = torch.tensor([[1.0, 0.0], [0.0, 0.0], [2.0, 1.0]])
    v = check_updates(deltas, [None] * 3, steps=[3, 0, 1])
    assert v.keep.tolist() == [True, False, True]
    assert v.reasons == {1: "no local step (fewer samples than a batch)"}
    assert check_updates(deltas, [None] * 3).keep.all()  # the other rules keep it
    # in a run: a batch larger than the smallest client's training set
    sizes = build(load_config(None, BASE)).context.federation.train_sizes()
    small = int(np.argmin(sizes))
    batch = [f"client.batch_size={int(sizes[small]) + 1}", "client.drop_last=true"]
    _, _, krum, updates = _first_round([*batch, "server.aggregator=krum"])
    assert [u.steps for u in updates if u.client == small] == [0]
    assert krum.rejected == {small: "no local step (fewer samples than a batch)"}
    for rule in ("mean", "median"):
        _, _, kept, _ = _first_round([*batch, f"server.aggregator={rule}"])
        assert kept.rejected == {}
