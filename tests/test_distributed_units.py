"""The pieces of multi-process runs, in one process: splits, sums, launch arguments,
address checks, failure diagnosis, the single-rank process group, and a source scan."""

from __future__ import annotations

import ast
import dataclasses
import logging
import signal
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist

from fedcluster import load_config, run_federation
from fedcluster.config import ConfigError
from fedcluster.data import build_federation, load_dataset
from fedcluster.data.files import DataError
from fedcluster.data.partition import PartitionError
from fedcluster.dist.collectives import Collectives
from fedcluster.dist.engine import split_by_load
from fedcluster.dist.group import (
    DistInfo,
    Heartbeat,
    _wait_for_all,
    endpoint_is_public,
    init_distributed,
    shutdown,
    warn_if_public,
)
from fedcluster.dist.launch import _first_failure, torchrun_args, worker_threads
from fedcluster.fl.aggregate import group_means, group_sums, means_from_sums

SRC = Path(__file__).resolve().parents[1] / "src" / "fedcluster"


def test_split_by_load_is_balanced_complete_and_deterministic():
    loads = np.array([50, 10, 40, 10, 30, 20, 20, 70])
    owner = split_by_load(loads, 3)
    assert owner.tolist() == split_by_load(loads, 3).tolist()
    per_rank = np.bincount(owner, weights=loads, minlength=3)
    assert per_rank.sum() == loads.sum() and per_rank.max() - per_rank.min() <= 10
    assert split_by_load(loads, 1).tolist() == [0] * 8
    assert sorted(split_by_load(np.array([5, 5]), 4).tolist()) == [0, 1]  # more ranks than work


def test_sums_split_over_processes_give_the_same_float32_means():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(40, 1000, generator=g) * torch.logspace(-3, 3, 1000)
    w = torch.randint(1, 500, (40,), generator=g).float()
    labels = torch.randint(0, 3, (40,), generator=g)
    whole, _ = group_means(v, w, labels, 3)
    parts = [group_sums(v[i::3], w[i::3], labels[i::3], 3, chunk=5) for i in range(3)]
    sums = sum(p[0] for p in reversed(parts))
    totals = sum(p[1] for p in reversed(parts))
    assert torch.equal(means_from_sums(sums, totals), whole)
    vd, wd = v.double(), w.double()
    expected = torch.stack([(vd[labels == j] * wd[labels == j, None]).sum(0)
                            / wd[labels == j].sum() for j in range(3)]).float()
    assert torch.equal(whole, expected)


def test_torchrun_arguments_for_each_launch_mode():
    worker = ["run", "cfg.toml", "--out", "runs/x"]
    local = torchrun_args(2, worker)
    assert local[0] == "--standalone" and local[-5:] == ["--module", "fedcluster", *worker][-5:]
    assert local[local.index("--nproc-per-node") + 1] == "2"
    assert local[local.index("--monitor-interval") + 1] == "1"
    static = torchrun_args(4, worker, nnodes=2, node_rank=1, endpoint="10.0.0.1:29500",
                           timeout_s=60)
    assert static[:8] == ["--rdzv-backend", "static", "--rdzv-endpoint", "10.0.0.1:29500",
                          "--node-rank", "1", "--rdzv-conf", "timeout=60"]
    elastic = torchrun_args(1, worker, nnodes=2, endpoint="host:29500")
    assert "c10d" in elastic and "join_timeout=300" in elastic
    with pytest.raises(ConfigError, match="--rdzv-endpoint"):
        torchrun_args(1, worker, nnodes=2)
    with pytest.raises(ConfigError, match="--node-rank 2"):
        torchrun_args(1, worker, nnodes=2, node_rank=2, endpoint="h:1")
    with pytest.raises(ConfigError, match="HOST:PORT"):
        torchrun_args(1, worker, nnodes=2, endpoint="h")


def test_worker_threads_share_the_cores():
    assert worker_threads(2, cores=2) == 1
    assert worker_threads(3, cores=2) == 1
    assert worker_threads(2, cores=16) == 8


@pytest.mark.parametrize(("host", "public"), [
    ("127.0.0.1", False), ("localhost", False), ("10.1.2.3", False), ("192.168.0.7", False),
    ("172.16.5.5", False), ("100.64.0.1", False), ("fd00::1", False), ("::1", False),
    ("8.8.8.8", True), ("2001:4860:4860::8888", True), ("no-such-host.invalid", False),
])
def test_public_rendezvous_addresses_are_recognised(host, public):
    assert endpoint_is_public(host) is public


def test_a_public_rendezvous_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="fedcluster"):
        assert warn_if_public("8.8.8.8")
        assert not warn_if_public("127.0.0.1")
    assert len(caplog.records) == 1
    assert "neither authenticated nor encrypted" in caplog.text and "WireGuard" in caplog.text


def _info(store: dist.Store, rank: int = 0, world: int = 3) -> DistInfo:
    return DistInfo(rank, world, rank, "gloo", torch.device("cpu"), 7.0, store)


def test_failure_diagnosis_names_ranks_behind_or_failed():
    store = dist.HashStore()
    store.set_timeout(timedelta(seconds=1))
    comm = Collectives(_info(store))
    comm.seq = 4
    store.set("at/1", "4")
    store.set("at/2", "3")
    msg = comm.diagnose("round 2: aggregation", RuntimeError("peer closed"))
    assert "rank(s) 2 stopped responding" in msg and "timeout 7 s" in msg
    assert "round 2: aggregation" in msg and "peer closed" in msg
    Collectives(_info(store, rank=1)).report_failure("ValueError: bad batch")
    assert "rank 1 failed: ValueError: bad batch" in comm.diagnose("x", RuntimeError())


def test_a_rank_whose_heartbeat_stands_still_is_lost():
    store = dist.HashStore()
    store.set_timeout(timedelta(seconds=1))
    beating = Heartbeat(store, 1)  # rank 1 alive; rank 2 beat once, then died
    store.set("beat/2", "0")
    try:
        assert Collectives(_info(store)).lost() == [2]
    finally:
        beating.stop()
    assert Collectives(_info(store, world=2)).lost() == [1]  # stopped: now it stands still


def test_the_final_wait_outlasts_the_collective_timeout():
    store = dist.HashStore()
    info = dataclasses.replace(_info(store, rank=1, world=2), timeout_s=0.1)
    late = threading.Timer(0.5, store.set, ("done/0", "1"))  # rank 0 writing its last files
    late.start()
    t0 = time.monotonic()
    _wait_for_all(info)
    assert time.monotonic() - t0 >= 0.4 and store.check(["done/1"])


def test_the_first_failure_prefers_a_killed_worker_within_a_second():
    def failure(code: int, t: int) -> SimpleNamespace:
        return SimpleNamespace(exitcode=code, timestamp=t)

    same_second = {0: failure(1, 100), 1: failure(-signal.SIGKILL, 100)}
    assert _first_failure(same_second)[0] == 1
    assert _first_failure({0: failure(1, 99), 1: failure(-signal.SIGKILL, 100)})[0] == 0
    assert _first_failure({0: failure(-signal.SIGTERM, 100), 1: failure(1, 100)})[0] == 0


def test_a_rank_lost_inside_a_collective_is_the_one_that_never_reports():
    store = dist.HashStore()
    store.set_timeout(timedelta(seconds=1))
    comm = Collectives(_info(store))  # world of 3; every rank reached collective #5
    comm.seq = 5
    for r in (1, 2):
        store.set(f"at/{r}", "5")
    store.set("alive/1/5", "1")  # rank 1 survived the failure too; rank 2 never reports
    t0 = time.monotonic()
    msg = comm.diagnose("round 3: gathering client updates", RuntimeError("reset by peer"))
    assert "rank(s) 2 stopped responding inside it" in msg and "reset by peer" in msg
    assert time.monotonic() - t0 < 3
    assert store.check(["alive/0/5"])  # this rank reported in for the others
    store.set("alive/2/5", "1")
    assert "every rank reported back" in comm.diagnose("x", RuntimeError("glitch"))


def test_sigterm_is_held_off_while_the_survivors_diagnose():
    import os
    import signal

    from fedcluster.dist.collectives import _sigterm_held

    calls = []
    previous = signal.signal(signal.SIGTERM, lambda *a: calls.append("handler"))
    try:
        with _sigterm_held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the signal is delivered here, to the recorder
        assert calls == []  # the caller's handler is not run: a DistributedError follows
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert calls == ["handler"]  # and it is back in place afterwards
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_local_partition_holds_only_this_sites_clients():
    cfg = load_config(None, ["data.partition=local", "data.num_clients=6"]).data
    ds = load_dataset(cfg)
    fed = build_federation(ds, cfg, 0, site=1, sites=3)
    sizes = fed.train_sizes()
    assert sizes[[0, 1, 4, 5]].sum() == 0 and sizes[2] > 0 and sizes[3] > 0
    assert sizes.sum() == len(ds.train_y)  # the site's own data, all of it, split in two
    assert np.intersect1d(fed.train_idx[2], fed.train_idx[3]).size == 0
    with pytest.raises(PartitionError, match="multiple of 4"):
        build_federation(ds, cfg, 0, site=0, sites=4)


def test_tensors_dataset_explains_missing_files(tmp_path):
    cfg = load_config(None, ["data.dataset=tensors", f"data.root={tmp_path}"]).data
    with pytest.raises(DataError, match="2 of 2 expected files are missing") as err:
        load_dataset(cfg)
    assert str(tmp_path / "train.safetensors") in str(err.value)


def test_run_config_keys_are_validated():
    with pytest.raises(ConfigError, match="run.timeout_s = 0"):
        load_config(None, ["run.timeout_s=0"])
    with pytest.raises(ConfigError, match="run.backend"):
        load_config(None, ["run.backend=mpi"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_rank_process_group_runs_the_same_federation(monkeypatch):
    cfg = load_config(None, ["rounds=2", "data.num_clients=8", "run.threads=1"])
    ref = run_federation(cfg)
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(_free_port())}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    info = init_distributed(cfg.run)
    try:
        assert info.is_main and info.backend == "gloo" and dist.is_initialized()
        got = run_federation(cfg, dist=info)
    finally:
        shutdown()
    assert not dist.is_initialized()
    assert torch.equal(got.models, ref.models)
    assert [r.accuracy for r in got.rounds] == [r.accuracy for r in ref.rounds]


def test_nccl_without_gpus_is_refused_before_any_work(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = load_config(None, ["run.backend=nccl"])
    with pytest.raises(ConfigError, match='run.backend = "nccl" needs CUDA'):
        init_distributed(cfg.run, {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"})
    assert not dist.is_initialized()


COLLECTIVES = {"all_gather_object", "broadcast_object_list", "scatter_object_list",
               "gather_object", "send_object_list", "recv_object_list"}
FORBIDDEN = COLLECTIVES | {"pickle", "cPickle", "dill", "cloudpickle", "marshal"}


# Reading a file format that is a pickle is not communication: CIFAR-10's batches are
# pickles, read with an unpickler that admits only numpy arrays.
FILE_FORMAT_READERS = {"data/torchvision_sources.py"}


def test_processes_exchange_tensors_only():
    """No *_object collective anywhere, and no pickle outside the readers of pickled file
    formats (torch.load without weights_only=True would unpickle too)."""
    offences = []
    for path in SRC.rglob("*.py"):
        reader = path.relative_to(SRC).as_posix() in FILE_FORMAT_READERS
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Attribute):
                names.append(node.attr)
            elif isinstance(node, ast.Name):
                names.append(node.id)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names += [a.name.split(".")[0] for a in node.names]
                names.append((getattr(node, "module", None) or "").split(".")[0])
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "load" and \
                    getattr(node.func.value, "id", "") == "torch":
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("weights_only"), ast.Constant)
                        and kw["weights_only"].value is True):
                    offences.append(f"{path.name}:{node.lineno} torch.load without weights_only")
            bad = COLLECTIVES if reader else FORBIDDEN
            offences += [f"{path.name}:{node.lineno} {n}" for n in names if n in bad]
    assert offences == []
    assert (SRC / "dist" / "collectives.py").is_file()  # the scan sees the comm code
