"""Security floors and fixes (issue 13, point 5)."""

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _floor(name: str) -> tuple[int, ...]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in deps if re.match(rf"{name}\s*[<>=!~]", d)]
    floors = re.findall(r">=\s*([0-9.]+)", spec)
    assert floors, f"{name} has no lower bound: {spec!r}"
    return max(tuple(int(p) for p in f.split(".")) for f in floors)


def test_torch_floor_excludes_the_weights_only_bypass():
    # CVE-2025-32434: torch.load(weights_only=True) could run code before torch 2.6
    assert _floor("torch") >= (2, 6)
    assert _floor("torchvision") >= (0, 21)  # built against torch 2.6


class SlowService:
    """A push service that takes one message per ``min_interval`` seconds."""

    name, max_chars, min_interval = "slow", None, 0.2

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, message) -> None:
        self.sent.append(message.event)

    def close(self) -> None:
        pass


def test_the_final_and_failure_messages_overtake_waiting_progress_messages():
    from fedcluster.notify.base import Message
    from fedcluster.notify.sender import Sender

    for last in ("end", "error"):
        service = SlowService()
        sender = Sender(service)
        sender.submit(Message("start", "s"))
        for r in range(30):
            sender.submit(Message("round", f"round {r}"))
        sender.submit(Message(last, "done"))
        # 30 progress messages at 5 a second would take 6 s; close waits 1 s: room for
        # about 5 messages, the first of them possibly taken before the last was queued
        assert not sender.close(timeout=1.0)
        assert last in service.sent[:3], service.sent
        assert service.sent[0] in ("start", last)


def _listening(pid: int) -> list[tuple[str, int]]:
    """The (address, port) of every TCP socket ``pid`` listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                addr, port = cols[1].split(":")
                raw = bytes.fromhex(addr)  # 32-bit words in host (little-endian) order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                family = socket.AF_INET if table == "tcp" else socket.AF_INET6
                found.append((socket.inet_ntop(family, raw), int(port, 16)))
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("rdzv", [
    [], pytest.param(["--rdzv-endpoint", "LOOPBACK"], marks=pytest.mark.slow)])
def test_a_one_machine_nproc_run_listens_on_loopback_only(rdzv, tmp_path):
    from test_distributed import ENV, _workers

    rdzv = [f"127.0.0.1:{_free_port()}" if a == "LOOPBACK" else a for a in rdzv]
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedcluster", "run", "rounds=100", "run.threads=1",
         "data.num_clients=8", "--out", str(out), "-q", "--nproc", "2", *rdzv],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        pids = [proc.pid, *_workers(proc.pid)]
        sockets = {pid: _listening(pid) for pid in pids}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert len(pids) >= 3  # the launcher and two workers
    assert len(sockets[proc.pid]) >= 1  # torchrun's stores, in the launcher
    every = [s for found in sockets.values() for s in found]
    assert len(every) >= 3 and all(addr in ("127.0.0.1", "::1") for addr, _ in every), sockets


def test_torchrun_args_keep_a_one_machine_run_on_loopback():
    from fedcluster.dist.launch import single_machine, torchrun_args

    args = torchrun_args(2, ["run"])
    assert args[:3] == ["--standalone", "--local-addr", "127.0.0.1"]
    args = torchrun_args(2, ["run"], endpoint="localhost:29400")
    assert args[args.index("--local-addr") + 1] == "127.0.0.1"
    assert "--local-addr" not in torchrun_args(2, ["run"], nnodes=2, node_rank=0,
                                               endpoint="10.0.0.1:29400")
    assert single_machine(1, None) and single_machine(1, "[::1]:5")
    assert not single_machine(1, "10.0.0.1:5") and not single_machine(2, "127.0.0.1:5")


def test_loopback_stores_bind_127_0_0_1_and_are_restored():
    import torch.distributed as dist

    from fedcluster.dist.launch import loopback_stores

    stock = dist.TCPStore
    with loopback_stores():
        server = dist.TCPStore("localhost", 0, is_master=True, wait_for_workers=False)
        client = stock("127.0.0.1", server.port, is_master=False)
        client.set("k", "v")
        assert server.get("k") == b"v"
        assert ("127.0.0.1", server.port) in _listening(os.getpid())
        assert not any(port == server.port and addr != "127.0.0.1"
                       for addr, port in _listening(os.getpid()))
    assert dist.TCPStore is stock


@pytest.mark.parametrize(("host", "nnodes", "warned"), [
    ("127.0.0.1", 1, False), ("", 1, False), ("localhost", 1, False),
    ("10.0.0.5", 1, True), ("127.0.0.1", 2, True), ("192.168.1.2", 3, True)])
def test_a_run_beyond_this_machine_is_warned_about_at_start(host, nnodes, warned, caplog):
    from fedcluster.dist.group import warn_multi_node

    with caplog.at_level(logging.WARNING, logger="fedcluster"):
        assert warn_multi_node(host, nnodes) is warned
    assert ("neither authenticated nor encrypted" in caplog.text) is warned
    assert ("trusted network" in caplog.text) is warned


def test_a_saved_config_carries_no_secret_and_a_rerun_takes_them_from_the_environment(
        tmp_path):
    """The run's config.toml holds *** for the token, the proxy password and the webhook
    URL; loaded again with the variables set it sends with the real token (a recorder
    stands in for Telegram), and without them it is refused naming the variable."""
    sys.path.insert(0, str(Path(__file__).parent))
    from http_recorder import Recorder

    from fedcluster.callbacks.notifications import notifiers_from_config
    from fedcluster.config import ConfigError, config_to_toml, load_config
    from fedcluster.notify.base import Message

    token, hook = "4242:REAL-token", "http://127.0.0.1:9/hook/KEY-SECRET-1"
    env = {"FEDCLUSTER_TELEGRAM_TOKEN": token, "FEDCLUSTER_PROXY_PASSWORD": "pw-SECRET",
           "FEDCLUSTER_WEBHOOK_URL": hook}
    with Recorder() as api:
        over = ["notify.telegram.chat_id=5", f"notify.telegram.api_url={api.url}",
                "notify.telegram.proxy=http://bob@127.0.0.1:9"]
        cfg = load_config(None, over, environ=env)
        saved = tmp_path / "config.toml"  # as the run writes it (callbacks/run_files.py)
        saved.write_text(config_to_toml(cfg))
        text = saved.read_text()
        for secret in (token, "pw-SECRET", "KEY-SECRET-1"):
            assert secret not in text
        assert text.count("***") == 3
        again = load_config(saved, ["notify.telegram.proxy=", "notify.webhook.url="],
                            environ={"FEDCLUSTER_TELEGRAM_TOKEN": token})
        assert again.notify.telegram.token == token
        (service, _), = notifiers_from_config(again.notify)
        service.send(Message("start", "again"))
        service.close()
        assert [p.path for p in api.posts] == [f"/bot{token}/sendMessage"]
        back = load_config(saved, environ=env).notify
        assert (back.telegram.token, back.webhook.url) == (token, hook)
        assert back.telegram.proxy == "http://bob:pw-SECRET@127.0.0.1:9"
    for missing, key in [("FEDCLUSTER_TELEGRAM_TOKEN", "notify.telegram.token"),
                         ("FEDCLUSTER_PROXY_PASSWORD", "notify.telegram.proxy"),
                         ("FEDCLUSTER_WEBHOOK_URL", "notify.webhook.url")]:
        partial = {k: v for k, v in env.items() if k != missing}
        with pytest.raises(ConfigError, match=rf"{key} holds \*\*\*.*{missing}"):
            load_config(saved, environ=partial)
