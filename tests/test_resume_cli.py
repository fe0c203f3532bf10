"""Runs that survive, through the command line: SIGKILL then ``--resume`` gives the
uninterrupted run's metrics and models; SIGTERM stops with a checkpoint and exit 143."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import load_file

BASE = ["rounds=8", "data.num_clients=8", "run.threads=1", "run.workers=1", "plots.enabled=false"]


def _start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "fedcluster", "run", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for_round(run_dir: Path, n: int, proc: subprocess.Popen, timeout: float = 300) -> int:
    """Poll until the run has checkpointed round >= n; returns that round."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            done = json.loads((run_dir / "checkpoint.json").read_text())["round"]
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= n:
            return done
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint of round {n} within {timeout} s")


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every descendant (torchrun's workers run in sessions of their
    own, out of reach of a process-group kill)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    for p in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def _rounds(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in ("seconds", "profile")}
            for x in lines]


def _models(run_dir: Path) -> dict:
    out = {}
    for p in sorted((run_dir / "models").glob("*.safetensors")):
        out[p.name] = load_file(p)
    return out


def _same_models(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[f].keys() == b[f].keys() and all((a[f][t] == b[f][t]).all() for t in a[f]) for f in a)


@pytest.mark.parametrize("extra", [
    [], pytest.param(["cluster.method=ifca", "cluster.restarts=2", "cluster.restart_rounds=1"],
                     marks=pytest.mark.slow),  # in-process: test_resume.py's ifca-restarts
    ["--nproc", "2"]], ids=["default", "ifca", "nproc2"])
def test_killed_run_resumes_to_the_uninterrupted_result(extra, cli, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert cli("run", *BASE, *extra, "-q", "--out", str(whole)).returncode == 0
    proc = _start(*BASE, *extra, "-q", "--out", str(cut))
    _wait_for_round(cut, 3, proc)
    _kill_tree(proc.pid)  # the launcher and its workers alike
    proc.communicate()
    assert not (cut / "summary.json").exists()  # killed: nothing written at the end
    launch = extra if extra[:1] == ["--nproc"] else []  # the config comes from the run
    resumed = cli("run", "--resume", str(cut), *launch, "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert _rounds(cut) == _rounds(whole)  # every round once, equal in every field but time
    assert _same_models(_models(cut), _models(whole))
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["reason"] == "completed" and summary["error"] is None


def test_sigterm_stops_with_checkpoint_models_and_summary(tmp_path):
    out = tmp_path / "run"
    proc = _start("rounds=500", "data.num_clients=8", "run.threads=1", "-q", "--out", str(out))
    _wait_for_round(out, 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    done = json.loads((out / "checkpoint.json").read_text())["round"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reason"] == "SIGTERM" and summary["final"]["round"] == done
    for path in (out / "models").glob("*.safetensors"):
        with safe_open(path, framework="pt") as f:
            assert f.metadata()["round"] == str(done)  # the models are that round's
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["round"] >= done
    # and it can be continued: the saved rounds = 500 is cut to a few more
    more = subprocess.run([sys.executable, "-m", "fedcluster", "run", "--resume", str(out),
                           f"rounds={done + 2}", "-q"], capture_output=True, text=True,
                          timeout=300)
    assert more.returncode == 0, more.stderr
    rounds = [json.loads(x)["round"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rounds == list(range(1, done + 3))


def test_resume_refuses_a_changed_computation_and_a_damaged_checkpoint(cli, tmp_path):
    out = tmp_path / "run"
    assert cli("run", "rounds=2", "data.num_clients=4", "-q", "--out", str(out)).returncode == 0
    refused = cli("run", "--resume", str(out), "rounds=3", "client.lr=0.5")
    assert refused.returncode == 2 and "client.lr = 0.01 -> 0.5" in refused.stderr
    ckpt = out / "checkpoint.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    proc = cli("run", "--resume", str(out), "rounds=3", "-q")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and str(ckpt) in proc.stderr
