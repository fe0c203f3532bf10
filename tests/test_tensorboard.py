"""TensorBoard: scalars per cluster and overall, client-loss histograms; a clear hint
when the optional package is missing."""

from __future__ import annotations

import importlib.util
import json

import pytest

from fedcluster.callbacks import RunFiles, TensorBoard, default_callbacks
from fedcluster.config import ConfigError, load_config
from fedcluster.loop import run_federation

SMALL = ["data.num_clients=6", "rounds=2", "cluster.k=2", "model.name=mlp", "model.hidden=[16]",
         "run.threads=1", "run.device=cpu", "plots.enabled=false", "tensorboard.enabled=true",
         "cluster.warmup_rounds=0"]  # refine clusters in round 1: both rounds have 2 clusters


def test_missing_tensorboard_gives_install_hint(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    cfg = load_config(None, SMALL, environ={})
    with pytest.raises(ConfigError, match=r'pip install "fedcluster\[tensorboard\]"'):
        default_callbacks(cfg, tmp_path)


def test_scalars_and_histograms_are_written(tmp_path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config(None, SMALL, environ={})
    run_federation(cfg, [RunFiles(tmp_path), TensorBoard(tmp_path / "tensorboard")], tmp_path)
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("overall/accuracy", "overall/top5", "overall/loss", "cluster_0/accuracy",
                "cluster_1/loss", "cluster_0/size", "clustering/sse"):
        assert tag in tags["scalars"], tag
    assert "clients/train_loss" in tags["histograms"]
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    got = [(e.step, e.value) for e in acc.Scalars("overall/accuracy")]
    assert got == [(r["round"], pytest.approx(r["accuracy"], rel=1e-6)) for r in rows]
    sizes = [e.value for e in acc.Scalars("cluster_1/size")]
    assert sizes == [r["clusters"][1]["size"] for r in rows]
    hist = acc.Histograms("clients/train_loss")
    assert [h.step for h in hist] == [1, 2]
    assert hist[0].histogram_value.num == len(rows[0]["clients"])


def test_truth_and_fairness_scalars_with_known_groups(tmp_path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config(None, [*SMALL, "data.groups=2", "data.shift=rotate", "data.partition=iid",
                             "data.min_size=1"], environ={})
    run_federation(cfg, [RunFiles(tmp_path), TensorBoard(tmp_path / "tensorboard")], tmp_path)
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"histograms": 0})
    acc.Reload()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for tag, key in (("clustering/ari", "ari"), ("clustering/nmi", "nmi"),
                     ("clustering/changed", "changed"),
                     ("clients/accuracy_mean", "client_accuracy_mean"),
                     ("clients/accuracy_p10", "client_accuracy_p10"),
                     ("clients/accuracy_min", "client_accuracy_min")):
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert got == [(r["round"], pytest.approx(r[key], rel=1e-6, abs=1e-9)) for r in rows], tag
    hist = acc.Histograms("clients/accuracy")
    assert [h.histogram_value.num for h in hist] == [
        sum(c["accuracy"] is not None for c in r["clients"]) for r in rows]
