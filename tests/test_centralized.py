"""mode = "centralized": the same model on the pooled data, evaluated on the test set."""

import json

import torch

from fedcluster.cli import main
from fedcluster.config import load_config
from fedcluster.loop import run_federation

torch.set_num_threads(1)


def _cfg(*extra):
    return load_config(None, ["mode=centralized", "rounds=3", "data.num_clients=5",
                              "cluster.k=2", "run.threads=1", *extra])


def test_trains_on_pooled_data_and_evaluates_on_the_test_set():
    cfg = _cfg()
    summary = run_federation(cfg)
    fed = summary.context.federation
    assert len(summary.rounds) == 3
    assert summary.context.config.cluster.k == 1  # one model
    pooled = int(fed.train_sizes().sum())
    for r in summary.rounds:
        (cluster,) = r.clusters
        assert cluster.eval_examples == len(fed.dataset.test_y)  # the whole test set
        assert cluster.members == list(range(5))
        (client,) = r.clients
        assert client.id == -1 and client.num_examples == pooled
        assert client.steps == pooled // cfg.client.batch_size
    assert summary.rounds[-1].accuracy > 0.8  # digits-cnn learns on all the data
    assert summary.models.shape == (1, summary.context.model.numel)


def test_same_seed_same_run():
    a = run_federation(_cfg("rounds=2"))
    b = run_federation(_cfg("rounds=2"))
    assert torch.equal(a.models, b.models)
    assert [r.loss for r in a.rounds] == [r.loss for r in b.rounds]


def test_cli_flag_writes_the_same_metrics_file(tmp_path, capsys):
    base = ["run", "rounds=1", "data.num_clients=4", "cluster.k=1", "run.threads=1", "-q"]
    assert main([*base, "--out", str(tmp_path / "fed")]) == 0
    assert main([*base, "--centralized", "--out", str(tmp_path / "cen")]) == 0
    f = [json.loads(x) for x in (tmp_path / "fed/metrics.jsonl").read_text().splitlines()]
    c = [json.loads(x) for x in (tmp_path / "cen/metrics.jsonl").read_text().splitlines()]
    assert [x["round"] for x in c] == [1]
    assert set(f[0]) == set(c[0]) and set(f[0]["clusters"][0]) == set(c[0]["clusters"][0])
    assert c[0]["clients"][0]["id"] == -1
    assert 'mode = "centralized"' in (tmp_path / "cen/config.toml").read_text()
