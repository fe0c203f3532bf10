"""Multi-process runs: real worker processes through torchrun and ``fedcluster run --nproc``.

Same results for 1, 2 and 3 processes (digits, k = 2): identical cluster memberships
and accuracies, cluster models equal to within 1e-6 (in practice bit for bit: the
per-cluster sums are accumulated in float64), eval losses to a relative 1e-5 (each
rank sums its share of the float32 losses). Plus cross-silo data, failures, rendezvous.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from fedcluster import load_config, run_federation
from fedcluster.callbacks import default_callbacks

SRC = str(Path(__file__).resolve().parents[1] / "src")
# the default method (refine): round 1 gathers signatures, round 2 clusters, round 3
# places the clients by their losses, which the ranks compute in shares and gather
SMALL = ["rounds=3", "run.threads=1", "cluster.k=2", "data.num_clients=12",
         "cluster.warmup_rounds=1"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]),
       "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def fedcluster(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedcluster", *args], env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def models(run_dir: Path) -> list[dict[str, torch.Tensor]]:
    return [load_file(run_dir / "models" / f"cluster-{i}.safetensors") for i in range(2)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dist")
    out = {"1": root / "one"}
    cfg = load_config(None, SMALL)
    run_federation(cfg, default_callbacks(cfg, out["1"], quiet=True), out["1"])
    out["2"] = root / "two"
    proc = fedcluster("run", *SMALL, "--out", str(out["2"]), "--nproc", "2")
    assert proc.returncode == 0, proc.stderr
    out["3"] = root / "three"  # the plain torchrun command of the README
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3",
         "-m", "fedcluster", "run", *SMALL, "--out", str(out["3"])],
        env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out["3-stdout"], out["3-stderr"] = proc.stdout, proc.stderr
    return out


@pytest.mark.parametrize("n", ["2", "3"])
def test_same_results_for_1_2_and_3_processes(runs, n):
    one, many = metrics(runs["1"]), metrics(runs[n])
    assert len(one) == len(many) == 3
    for a, b in zip(one, many, strict=True):
        assert [c["members"] for c in a["clusters"]] == [c["members"] for c in b["clusters"]]
        assert [c["cluster"] for c in a["clients"]] == [c["cluster"] for c in b["clients"]]
        assert a["accuracy"] == b["accuracy"]
        assert [c["accuracy"] for c in a["clusters"]] == [c["accuracy"] for c in b["clusters"]]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert [c["num_examples"] for c in a["clients"]] == \
            [c["num_examples"] for c in b["clients"]]
    assert {len(c["members"]) for c in one[-1]["clusters"]} != {0}  # two real clusters
    for ma, mb in zip(models(runs["1"]), models(runs[n]), strict=True):
        for key in ma:
            torch.testing.assert_close(mb[key], ma[key], rtol=0, atol=1e-6)


def test_only_rank_0_writes_and_prints(runs):
    assert runs["3-stdout"].count("done after 3 rounds") == 1  # one console table
    files = {p.name for p in runs["3"].iterdir()}
    assert {"config.toml", "metrics.jsonl", "models", "partition.json", "summary.json"} <= files
    assert len(metrics(runs["3"])) == 3  # one writer: a second would append its rounds too
    assert runs["3-stderr"].count("rank") == 0  # no rank logged anything


def _site(root: Path, labels: range, n_train: int, seed: int) -> None:
    """A site's own data: digits of ``labels`` only, as the "tensors" dataset."""
    from fedcluster.data import load_dataset

    ds = load_dataset(load_config(None).data)
    g = torch.Generator().manual_seed(seed)
    root.mkdir(parents=True)
    for name, x, y, n in (("train", ds.train_x, ds.train_y, n_train),
                          ("test", ds.test_x, ds.test_y, 100)):
        keep = torch.isin(y, torch.tensor(list(labels))).nonzero().squeeze(1)
        keep = keep[torch.randperm(len(keep), generator=g)[:n]]
        save_file({"x": x[keep].contiguous(), "y": y[keep].contiguous()},
                  str(root / f"{name}.safetensors"), metadata={"num_classes": "10"})


def test_local_partition_trains_each_site_on_its_own_data(tmp_path):
    _site(tmp_path / "site0", range(0, 5), 300, 0)
    _site(tmp_path / "site1", range(5, 10), 200, 1)
    out = tmp_path / "run"
    proc = fedcluster("run", "rounds=3", "run.threads=1", "data.dataset=tensors",
                      "data.partition=local", f"data.root={tmp_path}/site{{rank}}",
                      "data.num_clients=4", "cluster.k=2", "--out", str(out), "-q",
                      "--nproc", "2")
    assert proc.returncode == 0, proc.stderr
    final = metrics(out)[-1]
    sizes = {c["id"]: c["num_examples"] for c in final["clients"]}
    assert sizes[0] + sizes[1] == 300 and sizes[2] + sizes[3] == 200  # each site's own data
    assert sorted(c["members"] for c in final["clusters"]) == [[0, 1], [2, 3]]  # by site
    counts = json.loads((out / "partition.json").read_text())["train"]
    assert all(sum(row[5:]) == 0 for row in counts[:2])  # site 0 holds only labels 0-4
    assert counts[2] == counts[3] == [0] * 10  # site 1's label counts never left site 1


def _workers(root: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == root:
                    kids += [int(d.name), *_workers(int(d.name))]
            except (OSError, IndexError, ValueError):
                pass
    return kids


def _rank_pid(launcher: int, rank: int) -> int:
    for pid in _workers(launcher):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and b"TORCHELASTIC_RUN_ID" in b"".join(env):
            return pid
    raise AssertionError(f"no worker with RANK={rank} under {launcher}")


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and has not exited (a zombie awaiting its parent has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _start_and_wait(out: Path, rounds_done: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedcluster", "run", "rounds=200", "run.timeout_s=5",
         "run.threads=1", "data.num_clients=8", "--out", str(out), "-q", "--nproc", "2"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not ((out / "metrics.jsonl").exists()
               and len((out / "metrics.jsonl").read_text().splitlines()) >= rounds_done):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc


def _check_nothing_lost(out: Path, at_least: int) -> None:
    records = metrics(out)  # every line still whole JSON
    assert len(records) >= at_least
    assert [r["round"] for r in records] == list(range(1, len(records) + 1))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == len(records) and "rank(s) 1" in summary["error"]
    saved = models(out)
    assert all(torch.isfinite(t).all() for m in saved for t in m.values())


def test_a_dying_rank_stops_the_others_and_is_named(tmp_path):
    out = tmp_path / "run"
    proc = _start_and_wait(out, 2)
    os.kill(_rank_pid(proc.pid, 1), signal.SIGKILL)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 1
    assert "rank(s) 1 stopped responding" in err and "worker rank 1" in err
    _check_nothing_lost(out, 2)


@pytest.mark.slow
def test_a_hung_rank_is_named_within_the_timeout(tmp_path):
    out = tmp_path / "run"
    proc = _start_and_wait(out, 2)
    hung, rank0 = _rank_pid(proc.pid, 1), _rank_pid(proc.pid, 0)
    os.kill(hung, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        # wait for rank 0 to give up, save everything and report, i.e. to exit: killing the
        # hung rank earlier lets torchrun tear rank 0 down before it prints its diagnosis
        while _running(rank0):
            assert time.monotonic() - t0 < 5 + 30, "rank 0 did not give up within the timeout"
            time.sleep(0.05)
    finally:
        os.kill(hung, signal.SIGKILL)  # torchrun would wait 30 s for a stopped process
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    # rank 1 stopped either before reaching a collective or inside one, where it is the
    # rank that never reports back after the failure: named either way
    assert "rank(s) 1 stopped responding" in err, err
    assert "timeout 5 s" in err
    _check_nothing_lost(out, 2)


def test_a_rendezvous_missing_a_node_fails_within_its_timeout(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"127.0.0.1:{s.getsockname()[1]}"
    t0 = time.monotonic()
    proc = fedcluster("run", "rounds=1", "run.timeout_s=3", "--out", str(tmp_path / "run"),
                      "--nnodes", "2", "--node-rank", "0", "--rdzv-endpoint", endpoint,
                      timeout=120)
    assert proc.returncode == 1
    assert f"rendezvous at {endpoint} failed" in proc.stderr
    assert "1/2" in proc.stderr  # one of two nodes arrived
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_ifca_client_losses_over_ranks_give_the_same_run(tmp_path):
    """IFCA asks every client for its loss under each model before training: the ranks
    compute their shares and gather them, and the run matches one process's."""
    over = ["rounds=2", "run.threads=1", "cluster.method=ifca", "cluster.k=2",
            "data.num_clients=8"]
    cfg = load_config(None, over)
    run_federation(cfg, default_callbacks(cfg, tmp_path / "one", quiet=True), tmp_path / "one")
    proc = fedcluster("run", *over, "--out", str(tmp_path / "two"), "-q", "--nproc", "2")
    assert proc.returncode == 0, proc.stderr
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert [c["members"] for c in one[-1]["clusters"]] == \
        [c["members"] for c in two[-1]["clusters"]]
    for ma, mb in zip(models(tmp_path / "one"), models(tmp_path / "two"), strict=True):
        for key in ma:
            torch.testing.assert_close(mb[key], ma[key], rtol=0, atol=1e-6)
