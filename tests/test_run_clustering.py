"""Clustered runs end to end on small federations with known groups."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fedcluster.config import ConfigError, load_config
from fedcluster.fl.clustering import agreement
from fedcluster.loop import run_federation

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
SMALL = ["data.num_clients=16", "data.groups=4", "rounds=2", "model.hidden=[32]",
         "run.threads=1", "cluster.method=kmeans"]  # the example's refine: test_refine.py


def _run(*overrides):
    return run_federation(load_config(ROOT / "examples" / "rotated-digits.toml",
                                      [*SMALL, *overrides]))


def test_sketch_clustering_matches_full_vector_clustering_on_rotated_digits():
    full = _run("cluster.reduce=none")
    small = _run("cluster.reduce=sketch", "cluster.sketch_dim=64")
    truth = full.context.federation.groups
    a_full = [c.cluster for c in full.rounds[0].clients]
    a_small = [c.cluster for c in small.rounds[0].clients]
    assert agreement(truth, a_full)[0] == 1.0
    assert agreement(a_full, a_small)[0] == 1.0
    assert small.final.ari == 1.0 and small.final.nmi == 1.0


def test_round_record_carries_agreement_fairness_and_diagnostics():
    summary = _run("cluster.k=auto", "cluster.k_max=5")
    r = summary.final
    js = r.to_json()
    assert js["ari"] == r.ari and 0 <= js["nmi"] <= 1
    acc = [c["accuracy"] for c in js["clients"]]
    assert len(acc) == 16 and all(0 <= a <= 1 for a in acc)
    assert js["client_accuracy_min"] == pytest.approx(min(acc))
    assert js["client_accuracy_mean"] == pytest.approx(sum(acc) / 16)
    assert js["client_accuracy_min"] <= js["client_accuracy_p10"] <= js["client_accuracy_mean"]
    assert list(js["sse_per_k"]) == ["1", "2", "3", "4", "5"]
    assert list(js["silhouette_per_k"]) == ["2", "3", "4", "5"]
    sil = js["silhouette_per_k"]
    assert js["k_chosen"] == int(max(sil, key=sil.get))
    assert sum(js["cluster_sizes"]) == 16 and js["k"] == len(js["clusters"])
    assert js["changed"] >= 0 and js["clustered"] is True
    for c in js["clusters"]:  # each cluster's pooled accuracy is its members' pooled accuracy
        members = [m for m in js["clients"] if m["cluster"] == c["id"]]
        assert len(members) == c["size"]


def test_agreement_is_left_out_without_known_groups():
    r = _run("data.groups=1", "data.shift=none", "cluster.k=2").final
    assert r.ari is None and r.nmi is None
    assert r.to_json()["ari"] is None


@pytest.mark.parametrize("method", ["ifca", "cfl", "hierarchical"])
def test_every_method_runs_a_known_federation(method):
    extra = {"ifca": ["cluster.restarts=2", "cluster.restart_rounds=1"],
             "cfl": ["cluster.cfl_eps1=100", "cluster.cfl_eps2=0.001"],  # split at once
             "hierarchical": ["cluster.metric=cosine"]}[method]
    summary = _run(f"cluster.method={method}", *extra)
    r = summary.final
    assert r.ari is not None and len(r.clients) == 16
    assert all(c.accuracy is not None for c in r.clients)
    if method == "cfl":
        assert len(r.clusters) >= 2  # it split
    if method == "hierarchical":
        assert r.ari == 1.0 and r.clustering["clustered"] is False  # once, in round 1


def test_cluster_config_is_validated():
    with pytest.raises(ConfigError, match="cluster.method"):
        load_config(None, ["cluster.method=ifca", "cluster.k=auto"])
    with pytest.raises(ConfigError, match="cluster.k"):
        load_config(None, ["cluster.k=many"])
    with pytest.raises(ConfigError, match="cluster.reduce"):
        load_config(None, ["cluster.reduce=tsne"])
    with pytest.raises(ConfigError, match="cluster.k_max"):
        load_config(None, ["cluster.k_max=1"])
    assert load_config(None, ["cluster.method=hierarchical"]).cluster.resolved_schedule == "once"
    assert load_config(None, ["cluster.k=auto"]).cluster.k_initial == 8


def test_cli_writes_the_clustering_metrics(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "fedcluster", "run", "-q", "--out", str(out),
                           str(ROOT / "examples" / "rotated-digits.toml"), *SMALL],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[-1]["ari"] == 1.0
    assert {"nmi", "client_accuracy_p10", "sse_per_k", "silhouette"} <= set(rows[-1])
