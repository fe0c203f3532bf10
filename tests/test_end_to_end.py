"""End-to-end runs on the embedded digits data, through the CLI and the public API."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fedcluster import load_config, prepare, run_federation
from fedcluster.callbacks import Callback

FAST = ["rounds=8", "run.threads=1"]  # same threads, same float sums


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _without_time(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    from conftest import run_cli

    out = tmp_path_factory.mktemp("run") / "digits"
    proc = run_cli("run", *FAST, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_cli_run_learns_and_writes_the_run_directory(cli_run):
    out, proc = cli_run
    records = _metrics(out)
    assert [r["round"] for r in records] == list(range(1, 9))
    final = records[-1]
    assert final["accuracy"] > 0.6  # chance is 0.1
    assert final["accuracy"] > records[0]["accuracy"] + 0.3
    assert {c["id"] for c in final["clusters"]} == {0, 1}
    members = sorted(m for c in final["clusters"] for m in c["members"])
    assert members == list(range(20))  # every client in exactly one cluster
    assert len(final["clients"]) == 20
    assert {"id", "cluster", "train_loss", "num_examples", "xy"} <= set(final["clients"][0])
    held = [c for c in final["clusters"] if c["members"]]  # without true groups, the
    assert held and all(c["accuracy"] is None for c in final["clusters"] if not c["members"])
    n = sum(c["eval_examples"] for c in held)  # clusters may merge into one
    weighted = sum(c["accuracy"] * c["eval_examples"] for c in held) / n
    assert final["accuracy"] == pytest.approx(weighted)
    assert load_config(out / "config.toml") == load_config(None, FAST)
    for f in ("run.log", "partition.json", "summary.json", "models/cluster-0.safetensors",
              "models/cluster-1.safetensors"):
        assert (out / f).is_file(), f
    assert "round" in proc.stdout and str(out) in proc.stdout  # live table, where results are


def test_saved_models_reproduce_the_reported_accuracy(cli_run):
    out, _ = cli_run
    final = _metrics(out)[-1]
    ctx, engine = prepare(load_config(out / "config.toml"))
    for c in (c for c in final["clusters"] if c["members"]):
        tensors = load_file(str(out / "models" / f"cluster-{c['id']}.safetensors"))
        stats = engine.evaluate(ctx.model.from_state_dict(tensors), c["members"])
        assert stats.accuracy == pytest.approx(c["accuracy"], abs=1e-6)


def test_same_seed_same_metrics_and_api_equals_cli(cli_run):
    out, _ = cli_run
    cfg = load_config(None, FAST)
    again = run_federation(cfg, [])
    assert _without_time([r.to_json() for r in again.rounds]) == _without_time(_metrics(out))
    other = run_federation(load_config(None, ["rounds=2", "seed=1"]), [])
    assert other.rounds[0].to_json()["clusters"] != _metrics(out)[0]["clusters"]


def test_fedavg_partial_participation_and_sticky_clusters():
    cfg = load_config(None, ["rounds=4", "cluster.k=3", "server.clients_per_round=8"])

    class Spy(Callback):
        """Records each round's sampled clients and cluster of each client. It asserts
        nothing: the run logs and swallows a callback's exceptions."""

        def __init__(self):
            self.rounds = []

        def on_round_end(self, result):
            sampled = {c.id for c in result.clients}
            cluster_of = {m: cl.id for cl in result.clusters for m in cl.members}
            self.rounds.append((sampled, cluster_of))

    spy = Spy()
    summary = run_federation(cfg, [spy])
    assert len(summary.rounds) == len(spy.rounds) == 4 and summary.models.shape[0] == 3
    before, kept = {}, 0
    for sampled, cluster_of in spy.rounds:
        assert len(sampled) == 8
        for m, cluster in cluster_of.items():
            if m not in sampled and m in before:
                assert cluster == before[m], f"client {m} changed cluster unsampled"
                kept += 1
        before.update(cluster_of)
    assert kept > 0  # the check above ran

    fedavg = run_federation(load_config(None, ["rounds=2", "cluster.k=1"]), [])
    assert [c.id for c in fedavg.rounds[-1].clusters] == [0]
    assert fedavg.rounds[-1].clusters[0].members == list(range(20))
    assert torch.isfinite(fedavg.models).all()


def test_early_stop_on_small_changes():
    s = run_federation(load_config(None, ["rounds=10", "stop.accuracy_delta=1.0"]))
    assert len(s.rounds) == 2 and s.stopped_early and s.reason == "early-stop"
    s = run_federation(load_config(None, ["rounds=10", "stop.loss_delta=100", "stop.patience=3"]))
    assert len(s.rounds) == 4


def test_bad_input_fails_before_any_work(cli, tmp_path):
    out = tmp_path / "never"
    proc = cli("run", "rounds=-1", "--out", str(out))
    assert proc.returncode == 2
    assert "rounds = -1: expected an integer >= 1" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
    proc = cli("run", "server.lamda=0.5", "--out", str(out))
    assert proc.returncode == 2 and "did you mean 'lr'" in proc.stderr
    proc = cli("run", "data.min_size=500", "--out", str(out))
    assert proc.returncode == 2 and "min_size" in proc.stderr and not out.exists()


def test_existing_run_is_never_overwritten(cli, cli_run):
    out, _ = cli_run
    before = (out / "metrics.jsonl").read_bytes()
    proc = cli("run", "rounds=1", "--out", str(out))
    assert proc.returncode == 2 and "refusing to overwrite" in proc.stderr
    assert (out / "metrics.jsonl").read_bytes() == before


def test_validate_and_partition_commands(cli, tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('name = "x"\nrounds = 3\n[cluster]\nk = 3\n')
    proc = cli("validate", str(good))
    assert proc.returncode == 0 and "ok" in proc.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[data]\nalpha = 0\n")
    proc = cli("validate", str(bad))
    assert proc.returncode == 2 and "data.alpha = 0" in proc.stderr
    proc = cli("partition", "data.num_clients=5", "data.partition=iid")
    assert proc.returncode == 0
    rows = [line for line in proc.stdout.splitlines() if line.strip().startswith("│")]
    assert len(rows) >= 5
    totals = [int(r.split("│")[-3]) for r in rows if r.split("│")[1].strip().isdigit()]
    assert sum(totals) == 1437 and max(totals) - min(totals) <= 1  # iid: near-equal parts


def test_failing_callback_never_stops_training(caplog):
    class Broken(Callback):
        def on_round_end(self, result):
            raise OSError("disk full")

    s = run_federation(load_config(None, ["rounds=3"]), [Broken()])
    assert len(s.rounds) == 3
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "callback Broken failed in on_round_end; it is disabled for the rest of the run"]
    assert np.isfinite(s.rounds[-1].accuracy)
