"""Two "hosts" on this machine: network namespaces, each with its own address and one
torchrun node, joined over a virtual ethernet link. The result must equal one process's.

Needs root and ``ip netns`` (skipped where either is missing or not permitted).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fedcluster import load_config, run_federation
from fedcluster.callbacks import default_callbacks

pytestmark = pytest.mark.slow

SRC = str(Path(__file__).resolve().parents[1] / "src")
SMALL = ["rounds=3", "run.threads=1", "cluster.k=2", "data.num_clients=12"]
TAG = f"fc{os.getpid() % 100000}"
HOSTS = [(f"{TAG}a", f"{TAG}va", "10.231.7.1"), (f"{TAG}b", f"{TAG}vb", "10.231.7.2")]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def two_hosts():
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2's ip")
    try:
        _ip("netns", "add", HOSTS[0][0])
    except subprocess.CalledProcessError as e:
        pytest.skip(f"network namespaces not permitted here: {e.stderr.strip()}")
    try:
        _ip("netns", "add", HOSTS[1][0])
        _ip("link", "add", HOSTS[0][1], "type", "veth", "peer", "name", HOSTS[1][1])
        for ns, dev, addr in HOSTS:
            _ip("link", "set", dev, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield HOSTS
    finally:
        for ns, _, _ in HOSTS:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_two_hosts_give_the_single_process_result(two_hosts, tmp_path):
    one = tmp_path / "one"
    cfg = load_config(None, SMALL)
    run_federation(cfg, default_callbacks(cfg, one, quiet=True), one)

    endpoint = f"{two_hosts[0][2]}:29517"
    procs = []
    for node, (ns, dev, _) in enumerate(two_hosts):
        env = {**os.environ, "PYTHONPATH": SRC, "GLOO_SOCKET_IFNAME": dev,
               "OMP_NUM_THREADS": "1"}
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "fedcluster", "run", *SMALL,
               "--out", str(tmp_path / f"node{node}"), "-q", "--nnodes", "2",
               "--node-rank", str(node), "--rdzv-endpoint", endpoint]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert not (tmp_path / "node1").exists()  # only global rank 0 (on node 0) writes
    many = tmp_path / "node0"
    a = (one / "metrics.jsonl").read_text().splitlines()
    b = (many / "metrics.jsonl").read_text().splitlines()
    assert len(a) == len(b) == 3
    for ra, rb in zip(map(json.loads, a), map(json.loads, b), strict=True):
        assert [c["members"] for c in ra["clusters"]] == [c["members"] for c in rb["clusters"]]
        assert ra["accuracy"] == rb["accuracy"]
    for i in range(2):
        ma = load_file(one / "models" / f"cluster-{i}.safetensors")
        mb = load_file(many / "models" / f"cluster-{i}.safetensors")
        for key in ma:
            torch.testing.assert_close(mb[key], ma[key], rtol=0, atol=1e-6)
