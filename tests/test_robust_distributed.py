"""Faults, attacks and a robust rule under ``--nproc 2`` give the one-process run: the same
rejections, the same records and the same models (every rank decides on the same
gathered updates; a failing client's error reaches every rank)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fedcluster.config import load_config
from fedcluster.data import build_federation, load_dataset
from fedcluster.fl.attack import attack_of

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
       "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
ARGS = ["rounds=2", "run.threads=1", "run.workers=1", "cluster.k=2", "data.num_clients=8",
        "attack.kind=nan", "attack.fraction=0.25", "server.aggregator=median",
        "server.mixing=nnm", "server.byzantine=1", "plots.enabled=false", "-q"]

PLUGIN = """
import fedcluster.engines.sequential as sequential

_train = sequential.local_train


def local_train(model, start, x, y, idx, *args, **kwargs):
    if len(idx) == {size}:  # the one client of this size fails
        raise RuntimeError("boom on purpose")
    return _train(model, start, x, y, idx, *args, **kwargs)


sequential.local_train = local_train
"""


def _failing_client() -> tuple[int, int]:
    """An honest client whose training-set size no other client has, and that size."""
    cfg = load_config(None, ARGS[:-2])
    fed = build_federation(load_dataset(cfg.data), cfg.data, cfg.seed)
    sizes = fed.train_sizes()
    attackers = attack_of(cfg).attackers
    unique = [c for c in range(len(sizes)) if (sizes == sizes[c]).sum() == 1
              and c not in attackers]
    return unique[0], int(sizes[unique[0]])


def _run(out: Path, plugin: Path, *extra: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "fedcluster", "run", *ARGS, "--plugin",
                           str(plugin), "--out", str(out), *extra], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_faults_and_attacks_give_the_same_run_on_one_and_two_processes(tmp_path):
    client, size = _failing_client()
    plugin = tmp_path / "failing.py"
    plugin.write_text(PLUGIN.format(size=size))
    one = _run(tmp_path / "one", plugin)
    two = _run(tmp_path / "two", plugin, "--nproc", "2")
    attackers = sorted(attack_of(load_config(None, ARGS[:-2])).attackers)
    for a, b in zip(one, two, strict=True):
        want = {str(c): "non-finite" for c in attackers}
        want[str(client)] = "error: RuntimeError: boom on purpose"
        assert a["rejected"] == b["rejected"] == want
        assert a["attackers"] == b["attackers"] == attackers
        assert a["accuracy"] == b["accuracy"]
        assert [c["members"] for c in a["clusters"]] == [c["members"] for c in b["clusters"]]
    for i in range(2):
        m1 = load_file(tmp_path / "one" / "models" / f"cluster-{i}.safetensors")
        m2 = load_file(tmp_path / "two" / "models" / f"cluster-{i}.safetensors")
        assert m1.keys() == m2.keys()
        assert all(torch.equal(m1[k], m2[k]) and torch.isfinite(m1[k]).all() for k in m1)
    assert json.loads((tmp_path / "two" / "partition.json").read_text())["attackers"] \
        == attackers
    assert np.isfinite([r["accuracy"] for r in two]).all()
