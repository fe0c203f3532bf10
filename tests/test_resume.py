"""A run stopped after any round and continued from its checkpoint follows the
uninterrupted run's path exactly: the same round records and the same models."""

import dataclasses
import importlib.util
import json

import numpy as np
import pytest
import torch

from fedcluster.callbacks import Callback
from fedcluster.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fedcluster.config import ConfigError, load_config
from fedcluster.fl.state import RunState
from fedcluster.loop import run_federation
from fedcluster.resume import resume_config
from fedcluster.signals import Stopped

torch.set_num_threads(1)

BASE = ["rounds=5", "data.num_clients=8", "run.threads=1", "run.workers=1", "cluster.k=2"]
CASES = {
    "kmeans": ["cluster.method=kmeans"],
    "kmeans-half-of-the-clients": ["cluster.method=kmeans", "server.clients_per_round=0.5"],
    "hierarchical-once": ["cluster.method=hierarchical", "cluster.warmup_rounds=1",
                          "server.clients_per_round=0.5"],
    "ifca-restarts": ["cluster.method=ifca", "cluster.restarts=2", "cluster.restart_rounds=1"],
    "cfl": ["cluster.method=cfl", "cluster.cfl_eps1=5", "cluster.cfl_eps2=0.01"],
    "auto-k": ["cluster.method=kmeans", "cluster.k=auto", "cluster.k_max=3"],
    "refine-half-of-the-clients": ["cluster.method=refine", "server.clients_per_round=0.5"],
    "refine-auto-k-warmup": ["cluster.method=refine", "cluster.k=auto", "cluster.k_max=3",
                             "cluster.warmup_rounds=1"],
    "early-stop-state": ["stop.loss_delta=100", "stop.patience=3"],
    "centralized": ["mode=centralized"],
    "fedadam": ["server.optimizer=fedadam", "server.lr=0.03"],
    "fedyogi-cfl": ["cluster.method=cfl", "cluster.cfl_eps1=5", "cluster.cfl_eps2=0.01",
                    "server.optimizer=fedyogi", "server.lr=0.03"],
    "scaffold-half-of-the-clients": ["algorithm.name=scaffold", "client.optimizer=sgd",
                                     "client.lr=0.1", "server.clients_per_round=0.5"],
    "scaffold-cfl": ["algorithm.name=scaffold", "client.optimizer=sgd", "client.lr=0.1",
                     "cluster.method=cfl", "cluster.cfl_eps1=5", "cluster.cfl_eps2=0.01"],
    # personal models in the client store (the records hold each client's accuracy with it)
    "ditto-half-of-the-clients": ["algorithm.name=ditto", "algorithm.mu=0.1",
                                  "server.clients_per_round=0.5"],
    "feddyn": ["algorithm.name=feddyn", "algorithm.alpha=0.1"],
    # a round sampling both nan attackers falls below min_clients: no step (rounds 1, 4, 5)
    "attacked-median-skips": ["server.clients_per_round=0.5", "attack.kind=nan",
                              "attack.fraction=0.25", "server.aggregator=median",
                              "server.min_clients=3", "server.optimizer=fedadam",
                              "server.lr=0.03"],
    # DP: the accountant's steps and the adaptive clip norm are run state; skipped rounds
    # (both nan attackers sampled) add no step
    "privacy-adaptive-skips": ["server.clients_per_round=0.5", "attack.kind=nan",
                               "attack.fraction=0.25", "server.min_clients=3",
                               "privacy.enabled=true", "privacy.adaptive=true",
                               "privacy.noise_multiplier=0.5", "privacy.count_noise=1",
                               "privacy.clip=0.05"],
}


class Records(Callback):
    def __init__(self) -> None:
        self.rounds = []

    def on_round_end(self, result):
        self.rounds.append(result.to_json())


class StopAfter(Records):
    """Stops the run as a SIGTERM would, as round ``n + 1`` starts."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def on_round_start(self, round_, clients):
        if round_ == self.n + 1:
            raise Stopped(15)


def _timeless(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("seconds", "profile")}


def _needs(case: str) -> pytest.MarkDecorator:
    missing = "privacy" in case and importlib.util.find_spec("dp_accounting") is None
    return pytest.mark.skipif(missing, reason="the optional extra [privacy] is not installed")


@pytest.mark.parametrize("case", [pytest.param(c, marks=_needs(c)) for c in CASES])
def test_stopped_and_resumed_equals_uninterrupted(case, tmp_path):
    cfg = load_config(None, [*BASE, *CASES[case]])
    whole = Records()
    uninterrupted = run_federation(cfg, [whole])
    first = StopAfter(2)
    with pytest.raises(Stopped):
        run_federation(cfg, [first], tmp_path)
    state = load_checkpoint(tmp_path)
    assert state.round == 2
    rest = Records()
    resumed = run_federation(cfg, [rest], tmp_path, start=state)
    assert len(rest.rounds) == len(whole.rounds) - 2
    assert [_timeless(r) for r in first.rounds + rest.rounds] == \
        [_timeless(r) for r in whole.rounds]
    assert torch.equal(resumed.models, uninterrupted.models)
    assert resumed.round == uninterrupted.round and resumed.reason == uninterrupted.reason
    assert load_checkpoint(tmp_path).round == uninterrupted.round  # the last round saved


def test_checkpoint_round_trips_every_part_of_the_state(tmp_path):
    state = RunState(3, torch.randn(2, 5), np.array([0, -1, 1, 1]),
                     {"clustered": [0, 2, 3], "restart": 1}, {"calm": 1, "loss": 0.25},
                     {"m": torch.randn(2, 5)}, {"c": torch.arange(8.0).view(4, 2)},
                     {"opt.0.step": torch.tensor(4.0)})
    save_checkpoint(tmp_path, state)
    back = load_checkpoint(tmp_path)
    assert (back.round, back.method, back.stop) == (3, state.method, state.stop)
    assert torch.equal(back.models, state.models)
    assert np.array_equal(back.assignment, state.assignment)
    for group in ("server_opt", "clients", "extra"):
        got, want = getattr(back, group), getattr(state, group)
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)
    plain = json.loads((tmp_path / "checkpoint.json").read_text())
    assert plain["round"] == 3
    store = plain["clients"]["c"]["file"]  # the client store has a file of its own
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([  # no temp files left
        "checkpoint.json", "checkpoint.safetensors", store])
    save_checkpoint(tmp_path, dataclasses.replace(state, round=4))  # the old store goes
    newer = json.loads((tmp_path / "checkpoint.json").read_text())["clients"]["c"]["file"]
    assert newer != store and not (tmp_path / store).exists() and (tmp_path / newer).exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing"])
def test_a_damaged_checkpoint_is_one_line_naming_the_file(damage, tmp_path):
    save_checkpoint(tmp_path, RunState(1, torch.randn(2, 50), np.zeros(4, dtype=np.int64)))
    path = tmp_path / "checkpoint.safetensors"
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00\x01not a checkpoint" * 10)
    else:
        path.unlink()
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    save_checkpoint(tmp_path, RunState(1, torch.randn(2, 50), np.zeros(8, dtype=np.int64)))
    with pytest.raises(CheckpointError, match="this config builds a model of"):
        run_federation(load_config(None, BASE), [], tmp_path, start=load_checkpoint(tmp_path))


def test_resume_refuses_overrides_that_change_the_computation(tmp_path):
    from fedcluster.config import config_to_toml

    (tmp_path / "config.toml").write_text(config_to_toml(load_config(None, BASE)))
    with pytest.raises(ConfigError, match=r"client.lr = 0.01 -> 0.5"):
        resume_config(tmp_path, ["client.lr=0.5"], done=2)
    with pytest.raises(ConfigError, match="pass rounds=N with N > 5"):
        resume_config(tmp_path, [], done=5)
    assert resume_config(tmp_path, ["rounds=9", "plots.enabled=false"], done=5).rounds == 9
    assert resume_config(tmp_path, ["client.lr=0.01"], done=2).client.lr == 0.01  # unchanged
