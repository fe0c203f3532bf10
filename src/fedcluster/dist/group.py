"""Process groups for multi-process runs: detect a torchrun launch, start and end the group.

Nothing happens at import. :func:`init_distributed` is called explicitly when the
environment says torchrun (or ``fedcluster run --nproc``) started this process: it
joins the rendezvous, starts gloo (CPU) or NCCL (GPU) with ``run.timeout_s`` as the
collective timeout, and pins the process to ``cuda:LOCAL_RANK`` when GPUs exist.

torch.distributed has no authentication or encryption, so a rendezvous endpoint that
is a public address is warned about once (see the README, "Security").
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..config import ConfigError, RunConfig

__all__ = ["CHECKED_ENV", "DistInfo", "endpoint_is_public", "init_distributed", "is_loopback",
           "launched", "shutdown", "warn_if_public", "warn_multi_node"]

log = logging.getLogger(__name__)

CHECKED_ENV = "FEDCLUSTER_RDZV_CHECKED"
_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
HEARTBEAT_S = 0.25  # how often each rank counts up its ``beat/RANK`` key in the store
FINAL_WAIT_S = 24 * 3600.0  # how long the ranks wait for each other at the end of a run


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the group and what it runs on."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device
    timeout_s: float
    store: dist.Store

    @property
    def is_main(self) -> bool:
        """Global rank 0: the only process that writes files or prints the table."""
        return self.rank == 0


class Heartbeat:
    """A daemon thread that counts up ``beat/RANK`` in the store every :data:`HEARTBEAT_S`
    while the rank is alive, busy computing or blocked in a collective alike, so another
    rank can tell it from one that died or was stopped (see ``Collectives.lost``).
    TCPStore operations are serialised by the store's own lock, so the thread shares it."""

    def __init__(self, store: dist.Store, rank: int) -> None:
        self._store, self._key = store, f"beat/{rank}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="fedcluster-heartbeat",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        count = 0
        while True:
            try:
                self._store.set(self._key, str(count))
            except Exception:  # the store is gone: the run is over either way
                log.debug("heartbeat stopped", exc_info=True)
                return
            count += 1
            if self._stop.wait(HEARTBEAT_S):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


_heartbeat: Heartbeat | None = None


def launched(env: Mapping[str, str] = os.environ) -> bool:
    """Whether a launcher (torchrun) started this process as one rank of a group."""
    return "RANK" in env and "WORLD_SIZE" in env


def endpoint_is_public(host: str) -> bool:
    """True when ``host`` resolves to an address outside loopback and private ranges."""
    host = host.strip().strip("[]")
    try:
        addrs = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            addrs = {ipaddress.ip_address(info[4][0].split("%")[0])
                     for info in socket.getaddrinfo(host, None)}
        except (OSError, ValueError):
            return False  # unresolvable: the rendezvous itself will fail with its own error
    return any(a.is_global for a in addrs)


def is_loopback(host: str) -> bool:
    """True when ``host`` is ``localhost`` or a loopback address (this machine only)."""
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_public(host: str) -> bool:
    """Log a warning (and return True) when the rendezvous host is a public address."""
    if not endpoint_is_public(host):
        return False
    log.warning(
        "the rendezvous endpoint %s is a public address: torch.distributed traffic (model "
        "updates) is neither authenticated nor encrypted; run across untrusted networks only "
        "through a VPN such as WireGuard (see README, Security)", host)
    return True


def warn_multi_node(host: str, nnodes: int) -> bool:
    """Warn once at start (and return True) when a run reaches beyond this machine
    (several nodes, or a rendezvous host that is not loopback): torch.distributed is
    unauthenticated and unencrypted. A public endpoint gets :func:`warn_if_public`'s
    stronger warning instead."""
    if nnodes <= 1 and (not host or is_loopback(host)):
        return False
    if not warn_if_public(host):
        log.warning(
            "multi-node run (rendezvous %s, %d node(s)): torch.distributed is neither "
            "authenticated nor encrypted, and torchrun's rendezvous unpickles what its store "
            "holds: anyone who reaches these ports can join, read the model updates or run "
            "code; keep every node and the endpoint on a trusted network (see README, "
            "Security)", host or "?", nnodes)
    return True


def _backend(run: RunConfig, cuda: bool) -> str:
    if run.backend == "auto":
        return "nccl" if cuda else "gloo"
    if run.backend == "nccl" and not cuda:
        raise ConfigError('run.backend = "nccl" needs CUDA GPUs, and none is usable here '
                          '(set run.backend = "gloo" or "auto")')
    return run.backend


def init_distributed(run: RunConfig, env: Mapping[str, str] = os.environ) -> DistInfo:
    """Join the group the launcher set up in ``env`` and start the process group."""
    missing = [k for k in _ENV if k not in env]
    if missing:
        raise RuntimeError(f"not started by torchrun: environment lacks {', '.join(missing)}")
    rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
    cuda = torch.cuda.is_available() and run.device != "cpu"
    backend = _backend(run, cuda)
    device = torch.device("cpu")
    if cuda:
        device = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if rank == 0 and CHECKED_ENV not in env:  # `fedcluster run --nproc` checked it already
        nodes = world // max(1, int(env.get("LOCAL_WORLD_SIZE", world)))
        warn_multi_node(env["MASTER_ADDR"], nodes)
    timeout = timedelta(seconds=run.timeout_s)
    store, rank, world = next(dist.rendezvous("env://", rank, world, timeout=timeout))
    store.set_timeout(timeout)
    dist.init_process_group(backend, store=dist.PrefixStore("pg", store), rank=rank,
                            world_size=world, timeout=timeout,
                            device_id=device if backend == "nccl" else None)
    log.debug("rank %d/%d (local %d) joined: %s on %s", rank, world, local, backend, device)
    info = DistInfo(rank, world, local, backend, device, run.timeout_s,
                    dist.PrefixStore("fedcluster", store))
    global _heartbeat
    _heartbeat = Heartbeat(info.store, rank)
    return info


def shutdown(info: DistInfo | None = None, sync: bool = False) -> None:
    """End the process group, if one was started.

    ``sync`` (after a successful run) first waits for every rank, so that no rank tears
    its connections down while rank 0 is still writing and the others still connected.
    The wait is in the store, not a barrier bounded by ``run.timeout_s``: rank 0's last
    files (models, report, figures) may take longer than a short collective timeout.
    """
    global _heartbeat
    try:
        if sync and info is not None and dist.is_available() and dist.is_initialized():
            _wait_for_all(info)  # beating meanwhile: a rank that finished is not lost
    finally:
        if _heartbeat is not None:
            _heartbeat.stop()
            _heartbeat = None
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _wait_for_all(info: DistInfo) -> None:
    """Report this rank done and wait until every rank has (polled, so that a signal,
    torchrun stopping this rank because another failed, is acted on at once)."""
    info.store.set(f"done/{info.rank}", "1")
    keys = [f"done/{r}" for r in range(info.world_size)]
    deadline = time.monotonic() + max(info.timeout_s, FINAL_WAIT_S)
    while not info.store.check(keys):
        if time.monotonic() > deadline:
            raise TimeoutError("the other ranks did not finish within "
                               f"{max(info.timeout_s, FINAL_WAIT_S):g} s of this one")
        time.sleep(0.05)
