"""Server optimisers, FedProx, SCAFFOLD, FedDyn, Ditto and FedRep under ``--nproc 2``
give the one-process run: every rank steps the same per-cluster state on the same
all-reduced sums, each rank's engine trains its clients with the proximal term or its
corrections, and each client's own state (control variates, personal models and heads)
lives on the one rank that trains it; a checkpoint gathers it whole, and a run resumed
on 2 processes continues the one-process run."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fedcluster import load_config, run_federation
from fedcluster.build import build
from fedcluster.callbacks import default_callbacks
from fedcluster.callbacks.base import CallbackList
from fedcluster.checkpoint import CHECKPOINT, load_checkpoint
from fedcluster.dist.engine import DistributedEngine, split_by_load
from fedcluster.fl.state import new_state
from fedcluster.loop import _final_save, initial_state
from fedcluster.profiling import Profiler

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
    if case != "fedprox-fedadam":  # the client state, gathered from the ranks at checkpoint
        sa, sb = load_checkpoint(one).clients, load_checkpoint(two).clients
        assert sa.keys() == sb.keys() and sa
        for key in sa:
            torch.testing.assert_close(sb[key], sa[key], rtol=0, atol=1e-6)


RANK_SCRIPT = """
import sys
import torch
from safetensors.torch import save_file
from fedcluster import load_config
from fedcluster.build import build
from fedcluster.callbacks.base import CallbackList
from fedcluster.dist.group import init_distributed, shutdown
from fedcluster.loop import initial_state
from fedcluster.profiling import Profiler
cfg = load_config(None, sys.argv[2:])
info = init_distributed(cfg.run)
run = build(cfg, None, info)
state = initial_state(run)
for r in range(1, cfg.rounds + 1):
    state, _ = run.rounds(state, r, CallbackList([]), Profiler())
out = {"held": torch.from_numpy(run.rounds.held())}
out.update({k: t.contiguous() for k, t in state.clients.items()})
save_file(out, f"{sys.argv[1]}/rank{info.rank}.safetensors")
shutdown(sync=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_each_rank_holds_only_the_state_of_the_clients_it_trains(tmp_path):
    """Ditto on 2 processes: rank r's store has exactly the rows of its home clients (none
    of the other rank's), equal to the one-process run's rows of those clients."""
    over = [*BASE, *CASES["ditto-half-of-the-clients"]]
    cfg = load_config(None, over)
    run = build(cfg)
    state = initial_state(run)
    for r in range(1, cfg.rounds + 1):
        state, _ = run.rounds(state, r, CallbackList([]), Profiler())
    whole = state.clients["personal"]
    env = {**ENV, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port())}
    procs = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, str(tmp_path), *over],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    got = [load_file(tmp_path / f"rank{r}.safetensors") for r in range(2)]
    held = [g["held"].numpy() for g in got]
    assert len(held[0]) and len(held[1]) and not set(held[0]) & set(held[1])
    assert sorted([*held[0], *held[1]]) == list(range(8))
    for g, ids in zip(got, held, strict=True):
        assert g["personal"].shape == (len(ids), whole.shape[1])  # its clients' rows only
        torch.testing.assert_close(g["personal"], whole[torch.from_numpy(ids)], rtol=0,
                                   atol=1e-6)


@pytest.mark.slow
def test_a_run_resumed_on_2_processes_continues_the_one_process_run(tmp_path):
    """SCAFFOLD with half of the clients: 2 rounds, then resumed to round 3, on 2 processes
    (the checkpoint's control variates gathered from both, each rank taking its clients'
    rows back) gives the records and models of the same on one process."""
    one, two = tmp_path / "one", tmp_path / "two"
    over = [*BASE, *CASES["scaffold-half-of-the-clients"]]
    for out, nproc in ((one, []), (two, ["--nproc", "2"])):
        for args in (["run", *over, "rounds=2", "--out", str(out)],
                     ["run", "--resume", str(out), "rounds=3"]):
            proc = subprocess.run([sys.executable, "-m", "fedcluster", *args, "-q", *nproc],
                                  env=ENV, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr
    a, b = _records(one), _records(two)
    assert len(a) == len(b) == 3
    assert [r["accuracy"] for r in a] == [r["accuracy"] for r in b]
    for i in range(2):
        ma = load_file(one / "models" / f"cluster-{i}.safetensors")
        mb = load_file(two / "models" / f"cluster-{i}.safetensors")
        for key in ma:
            torch.testing.assert_close(mb[key], ma[key], rtol=0, atol=1e-6)


class _TwoRanks:
    """Rank 0's view of a 2-rank group whose rank 1 holds ``other``: all_gather returns
    this rank's block and rank 1's block of the same chunk."""

    rank, world = 0, 2

    def __init__(self, other: torch.Tensor) -> None:
        self.other, self.calls = other, 0

    def all_gather(self, t: torch.Tensor, what: str) -> torch.Tensor:
        step = t.shape[0]
        theirs = torch.zeros_like(t)
        part = self.other[self.calls * step:(self.calls + 1) * step]
        theirs[:len(part)] = part
        self.calls += 1
        return torch.stack([t, theirs])


def test_a_checkpoint_gathers_the_ranks_rows_in_chunks_into_the_whole_store():
    sizes = np.array([50, 10, 40, 10, 30, 20, 20, 70, 5])
    home = split_by_load(sizes, 2)
    whole = torch.randn(9, 3, generator=torch.Generator().manual_seed(0))
    held = [np.flatnonzero(home == r) for r in range(2)]
    comm = _TwoRanks(whole[torch.from_numpy(held[1])])
    engine = DistributedEngine(None, comm, sizes, sizes, home)
    assert engine.held().tolist() == held[0].tolist()
    got = engine.gather_rows(whole[torch.from_numpy(held[0])], held[0], "x", chunk_bytes=24)
    assert torch.equal(got, whole)
    assert comm.calls == int(np.ceil(max(len(h) for h in held) / 2))  # 2 rows a chunk
    comm.rank = engine.rank = 1  # the other ranks only send
    comm.calls = 0
    assert engine.gather_rows(whole[torch.from_numpy(held[1])], held[1], "x") is None


def test_after_a_failure_split_client_state_is_not_checkpointed_by_halves(tmp_path, caplog):
    """The emergency checkpoint (after an error or a signal) cannot gather the ranks' rows:
    with client state split over processes it is skipped, leaving the last regular one;
    without, it is written."""
    state = new_state(torch.zeros(3), 4)
    state = dataclasses.replace(state, round=2, clients={"personal": torch.ones(2, 3)})
    split = SimpleNamespace(rounds=SimpleNamespace(held=lambda: np.array([0, 2])),
                            writes=True, context=SimpleNamespace(run_dir=tmp_path))
    _final_save(split, state)
    assert not (tmp_path / CHECKPOINT).exists()
    assert "not checkpointing round 2" in caplog.text
    whole = SimpleNamespace(rounds=SimpleNamespace(held=lambda: None), writes=True,
                            context=SimpleNamespace(run_dir=tmp_path))
    _final_save(whole, state)
    assert load_checkpoint(tmp_path).round == 2
