"""Experiment trackers: MLflow against a real `mlflow server` on a loopback port, W&B
offline, install hints, and a failing tracker that warns once while the run goes on."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from fedcluster.api import run
from fedcluster.callbacks import Tracker, default_callbacks
from fedcluster.cli import main
from fedcluster.config import ConfigError, load_config

# 6 clients in 2 rotated groups: k = 2 clusters, ARI/NMI known
SMALL = ["data.num_clients=6", "data.groups=2", "data.shift=rotate", "cluster.k=2",
         "model.name=mlp", "model.hidden=[16]", "run.threads=1", "plots.every=0"]


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("section", ["mlflow", "wandb"])
def test_missing_tracker_package_is_a_config_error_naming_the_extra(section, monkeypatch,
                                                                    tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == section else real(name, *a))
    cfg = load_config(None, [*SMALL, f"{section}.enabled=true"], environ={})
    with pytest.raises(ConfigError, match=rf'pip install "fedcluster\[{section}\]"'):
        default_callbacks(cfg, tmp_path)
    assert main(["validate", f"{section}.enabled=true"]) == 2
    assert f"fedcluster[{section}]" in capsys.readouterr().err


def test_tracker_params_are_the_flat_config_with_secrets_masked():
    from fedcluster.callbacks.tracker import config_params

    cfg = load_config(None, ["notify.telegram.chat_id=42", "mlflow.enabled=true",
                             "mlflow.tracking_uri=https://me:pa55word@mlflow.example:5000"],
                      environ={"FEDCLUSTER_TELEGRAM_TOKEN": "123:tok3n"})
    params = config_params(cfg)
    assert params["notify.telegram.token"] == "***"
    assert params["mlflow.tracking_uri"] == "https://me:***@mlflow.example:5000"
    assert params["model.hidden"] == "[200]" and params["cluster.k"] == "2"
    assert not any("tok3n" in v or "pa55word" in v for v in params.values())


class _Broken(Tracker):
    name = "broken"

    def __init__(self) -> None:
        super().__init__(hidden=["s3cret"])
        self.rounds, self.abandoned = 0, 0

    def _start(self, ctx) -> None:
        pass

    def _round(self, result) -> None:
        self.rounds += 1
        if result.round == 2:
            raise ConnectionError("http://user:s3cret@host unreachable\nmore lines")

    def _end(self, summary) -> None:  # never reached after the failure
        raise AssertionError("a failed tracker is not called again")

    def _abandon(self) -> None:
        self.abandoned += 1


def test_a_failing_tracker_warns_once_and_the_run_finishes(tmp_path, caplog):
    broken = _Broken()
    with caplog.at_level(logging.WARNING):
        result = run(None, [broken], overrides=[*SMALL, "rounds=4", "plots.enabled=false"],
                     run_dir=tmp_path / "run")
    assert len(result.rounds) == 4 and result.summary.reason == "completed"
    assert broken.rounds == 2 and broken.abandoned == 1  # not called after round 2
    warnings = [r for r in caplog.records if r.name == "fedcluster.callbacks.tracker"]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert text.startswith("broken: logging round 2 failed (ConnectionError:")
    assert "s3cret" not in text and "more lines" not in text


def test_unreachable_mlflow_server_warns_once_and_the_run_finishes(tmp_path, caplog):
    pytest.importorskip("mlflow")
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    start = time.monotonic()
    with caplog.at_level(logging.WARNING):
        result = run(None, overrides=[*SMALL, "rounds=2", "plots.enabled=false",
                                      "mlflow.enabled=true", f"mlflow.tracking_uri={uri}",
                                      "mlflow.timeout_s=1"], run_dir=tmp_path / "run")
    assert len(result.rounds) == 2 and (tmp_path / "run/summary.json").is_file()
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "fedcluster.callbacks.tracker"]
    assert len(warnings) == 1 and warnings[0].startswith("mlflow: starting its run failed")
    assert time.monotonic() - start < 60  # bounded retries, not MLflow's minutes


@pytest.fixture
def mlflow_server(tmp_path):
    """`mlflow server` on a free loopback port, its stores in tmp_path."""
    pytest.importorskip("mlflow")
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    port = _free_port()
    cmd = [exe, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
           "--artifacts-destination", str(tmp_path / "artifacts")]
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{uri}/health", timeout=2).ok:
                    break
            except requests.RequestException:  # not listening yet, or still starting
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("mlflow server did not start:\n" +
                            (tmp_path / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_mlflow_server_receives_params_metrics_and_artifacts(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    result = run(None, overrides=[*SMALL, "rounds=3", "mlflow.enabled=true",
                                  f"mlflow.tracking_uri={mlflow_server}",
                                  "mlflow.experiment=fl-test"], run_dir=run_dir)
    assert len(result.rounds) == 3
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("fl-test")
    (found,) = client.search_runs([exp.experiment_id])
    assert found.info.run_name == "run" and found.info.status == "FINISHED"
    params = found.data.params
    assert params["data.dataset"] == "digits" and params["cluster.k"] == "2"
    assert params["model.hidden"] == "[16]" and params["mlflow.tracking_uri"] == mlflow_server
    rows = _rows(run_dir)
    rid = found.info.run_id
    for key, pick in (("overall/accuracy", lambda r: r["accuracy"]),
                      ("cluster_1/loss", lambda r: r["clusters"][1]["loss"]),
                      ("cluster_0/size", lambda r: r["clusters"][0]["size"]),
                      ("clustering/ari", lambda r: r["ari"]),
                      ("clustering/nmi", lambda r: r["nmi"])):
        history = sorted((m.step, m.value) for m in client.get_metric_history(rid, key))
        # a round without the value (ARI before refine's clustering round) logs nothing
        want = [(r["round"], pick(r)) for r in rows if pick(r) is not None]
        assert want and history == [(i, pytest.approx(v, rel=1e-12)) for i, v in want], key
    names = {a.path for a in client.list_artifacts(rid)}
    assert {"models", "report.html", "summary.json", "config.toml", "metrics.jsonl"} <= names
    models = {a.path for a in client.list_artifacts(rid, "models")}
    assert models == {"models/cluster-0.safetensors", "models/cluster-1.safetensors"}
    # what the server holds is the run's model file, byte for byte
    local = Path(client.download_artifacts(rid, "models/cluster-1.safetensors", str(tmp_path)))
    assert local.read_bytes() == (run_dir / "models/cluster-1.safetensors").read_bytes()


def test_wandb_offline_run_holds_the_metrics(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from _wandb_records import history, read_records

    monkeypatch.setenv("WANDB_MODE", "offline")  # no network, whatever the machine says
    run_dir = tmp_path / "run"
    run(None, overrides=[*SMALL, "rounds=3", "wandb.enabled=true", "wandb.project=fl-test"],
        run_dir=run_dir)
    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    logged = history(path)
    rows = _rows(run_dir)
    assert sorted(logged) == [1, 2, 3]
    for r in rows:
        got = logged[r["round"]]
        assert got["overall/accuracy"] == pytest.approx(r["accuracy"], rel=1e-12)
        assert got["cluster_0/loss"] == pytest.approx(r["clusters"][0]["loss"], rel=1e-12)
        assert got["clustering/ari"] == pytest.approx(r["ari"], rel=1e-12)
    records = read_records(path)
    (header,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert header.project == "fl-test" and header.display_name == "run"
    config = {i.key: json.loads(i.value_json) for i in header.config.update}
    assert config["data"]["dataset"] == "digits" and config["rounds"] == 3
    assert config["cluster"]["k"] == 2
    artifacts = {r.artifact.name: r.artifact for r in records
                 if r.WhichOneof("record_type") == "artifact"}
    assert set(artifacts) == {"run-model", "run-report"}
    files = {e.path for e in artifacts["run-model"].manifest.contents}
    assert files == {"cluster-0.safetensors", "cluster-1.safetensors"}
    exits = [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"]
    assert exits == [0]


@pytest.mark.slow
def test_mlflow_default_store_is_in_the_current_directory(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run(None, overrides=[*SMALL, "rounds=2", "plots.enabled=false", "mlflow.enabled=true"],
        run_dir=tmp_path / "run")
    client = MlflowClient()  # MLflow's default, resolved in the same directory
    (found,) = client.search_runs([client.get_experiment_by_name("fedcluster").experiment_id])
    history = client.get_metric_history(found.info.run_id, "overall/accuracy")
    assert [m.step for m in history] == [1, 2]
