"""Server optimisers, FedProx, SCAFFOLD, FedDyn, Ditto and FedRep under ``--nproc 2``
give the one-process run: every rank steps the same per-cluster state on the same
all-reduced sums, each rank's engine trains its clients with the proximal term or its
share of the corrections, and every rank applies the same client-store updates (control
variates, personal models and heads) from the gathered deltas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fedcluster import load_config, run_federation
from fedcluster.callbacks import default_callbacks

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
       "OMP_NUM_THREADS": "1"}
BASE = ["rounds=3", "run.threads=1", "cluster.k=2", "data.num_clients=8"]
CASES = {
    "fedprox-fedadam": ["server.optimizer=fedadam", "server.lr=0.03", "algorithm.name=fedprox",
                        "algorithm.mu=0.1"],
    "scaffold-half-of-the-clients": ["algorithm.name=scaffold", "client.optimizer=sgd",
                                     "client.lr=0.1", "server.clients_per_round=0.5"],
    # every rank holds every client's personal model and trains its share of them
    "ditto-half-of-the-clients": ["algorithm.name=ditto", "algorithm.mu=0.1",
                                  "server.clients_per_round=0.5"],
    "fedrep": ["algorithm.name=fedrep"],
    "feddyn": ["algorithm.name=feddyn", "algorithm.alpha=0.1"],
}


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_the_same_run_on_1_and_2_processes(case, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    over = [*BASE, *CASES[case]]
    cfg = load_config(None, over)
    run_federation(cfg, default_callbacks(cfg, one, quiet=True), one)
    proc = subprocess.run([sys.executable, "-m", "fedcluster", "run", *over, "--out", str(two),
                           "-q", "--nproc", "2"], env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    a, b = _records(one), _records(two)
    assert len(a) == len(b) == 3
    assert [r["accuracy"] for r in a] == [r["accuracy"] for r in b]
    assert [r.get("personal_clients") for r in a] == [r.get("personal_clients") for r in b]
    assert [[c["cluster"] for c in r["clients"]] for r in a] == \
        [[c["cluster"] for c in r["clients"]] for r in b]
    for i in range(2):
        ma = load_file(one / "models" / f"cluster-{i}.safetensors")
        mb = load_file(two / "models" / f"cluster-{i}.safetensors")
        for key in ma:  # the sums are float64, so in practice bit for bit
            torch.testing.assert_close(mb[key], ma[key], rtol=0, atol=1e-6)
