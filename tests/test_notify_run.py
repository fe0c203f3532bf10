"""Notifications during real runs: the right messages arrive, and a failing service
(down, 500, 429) changes nothing about training; the token shows up nowhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from http_recorder import Recorder, closed_port

from fedcluster.callbacks import Notify, RunFiles
from fedcluster.config import load_config
from fedcluster.loop import run_federation
from fedcluster.notify import TelegramNotifier, WebhookNotifier

TOKEN = "246810:RUN-SECRET-TOKEN"
SMALL = ["name=digits", "data.num_clients=8", "rounds=3", "cluster.k=2", "model.name=mlp",
         "model.hidden=[16]",
         "run.threads=1", "run.device=cpu", "plots.enabled=false"]


@pytest.fixture(autouse=True)
def _no_env_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)


def _metrics(run_dir: Path) -> list[dict]:
    """The metrics lines without their timings."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("seconds")
    return rows


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    run_dir = tmp_path_factory.mktemp("baseline")
    run_federation(load_config(None, SMALL, environ={}), [RunFiles(run_dir)], run_dir)
    return _metrics(run_dir)


def _run_with(tmp_path: Path, api_url: str, flush: float = 2.0) -> tuple[Path, Notify]:
    cfg = load_config(None, SMALL, environ={})
    notify = Notify([(TelegramNotifier(TOKEN, "77", api_url, min_interval=0.05, timeout=2), 1)],
                    [TOKEN], flush_seconds=flush)
    run_federation(cfg, [RunFiles(tmp_path), notify], tmp_path)
    return tmp_path, notify


def test_messages_arrive_with_the_right_text(tmp_path: Path, baseline: list[dict]) -> None:
    with Recorder() as server:
        run_dir, notify = _run_with(tmp_path, server.url)
    texts = server.texts()
    assert len(texts) == 4  # start, rounds 1 and 2, end (which reports round 3)
    assert texts[0].startswith("fedcluster: run digits started")
    assert "8 clients" in texts[0] and "k=2" in texts[0] and "3 rounds" in texts[0]
    assert texts[1].startswith("digits round 1/3") and texts[2].startswith("digits round 2/3")
    final = _metrics(run_dir)[-1]
    assert texts[3].startswith("digits finished after 3 round(s)")
    assert f"accuracy {final['accuracy']:.4f}" in texts[3]
    for c in final["clusters"]:
        assert f"cluster {c['id']}: accuracy {c['accuracy']:.4f}" in texts[3]
    assert all(p.body["chat_id"] == "77" for p in server.posts)
    assert _metrics(run_dir) == baseline


@pytest.mark.parametrize("answer", [
    (500, {"ok": False, "description": "Internal Server Error"}),
    (429, {"ok": False, "parameters": {"retry_after": 1}}),
])
def test_failing_service_changes_nothing(tmp_path: Path, baseline: list[dict], answer,
                                         capsys: pytest.CaptureFixture,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    with Recorder(default=answer) as server:
        run_dir, notify = _run_with(tmp_path, server.url, flush=1.0)
    assert len(server.posts) >= 1  # it was tried
    assert _metrics(run_dir) == baseline
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err + caplog.text


def test_service_down_changes_nothing(tmp_path: Path, baseline: list[dict],
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    run_dir, notify = _run_with(tmp_path, f"http://127.0.0.1:{closed_port()}")
    assert _metrics(run_dir) == baseline
    sender = notify.senders[0][0]
    assert sender.failed == 4 and sender.sent == 0  # every message was tried
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "notification" in
                r.getMessage()]
    assert len(warnings) == 1
    assert TOKEN not in caplog.text


def test_crash_is_reported_with_the_error(tmp_path: Path) -> None:
    from fedcluster.callbacks import Callback

    class Boom(Callback):
        def on_round_end(self, result):  # noqa: ANN001
            if result.round == 2:
                raise KeyboardInterrupt  # not an Exception: it escapes the callback guard

    cfg = load_config(None, SMALL, environ={})
    with Recorder() as server:
        hook = WebhookNotifier(server.url + "/hook")
        notify = Notify([(hook, 0)], flush_seconds=2.0)
        with pytest.raises(KeyboardInterrupt):
            run_federation(cfg, [Boom(), notify], tmp_path)
    events = [p.body["event"] for p in server.posts]
    assert events == ["start", "error"]  # every = 0: start, end and errors only
    assert server.posts[1].body["error"].startswith("KeyboardInterrupt")
    # round 2's end was interrupted: the run counts (and checkpoints) 1 finished round
    assert "FAILED after 1 round(s)" in server.posts[1].body["text"]


def test_cli_run_with_env_token_leaks_it_nowhere(tmp_path: Path) -> None:
    with Recorder() as server:
        env = {**os.environ, "FEDCLUSTER_TELEGRAM_TOKEN": TOKEN,
               "PYTHONPATH": os.pathsep.join(p for p in (str(Path("src").resolve()),
                                                          os.environ.get("PYTHONPATH")) if p)}
        run_dir = tmp_path / "run"
        proc = subprocess.run(
            [sys.executable, "-m", "fedcluster", "run", *SMALL, "rounds=2",
             "notify.telegram.chat_id=5", f"notify.telegram.api_url={server.url}",
             "--out", str(run_dir), "--verbose"],
            env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    texts = server.texts()
    assert len(texts) == 3
    assert texts[0].startswith("fedcluster: run digits started")
    assert texts[1].startswith("digits round 1/2")
    assert texts[2].startswith("digits finished after 2 round(s)")
    assert all(p.path == f"/bot{TOKEN}/sendMessage" for p in server.posts)
    files = "".join(p.read_text(errors="replace") for p in run_dir.rglob("*")
                    if p.is_file() and p.suffix in (".toml", ".log", ".json", ".jsonl", ".html"))
    assert TOKEN not in proc.stdout + proc.stderr + files
    assert 'token = "***"' in (run_dir / "config.toml").read_text()
