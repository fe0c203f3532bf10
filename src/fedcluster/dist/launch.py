"""``fedcluster run CFG --nproc N``: start N local workers through torch.distributed.run.

As torchtune's ``tune run`` does, the CLI hands torch's own launcher (torchrun) its
arguments instead of starting processes itself: a standalone rendezvous on this
machine, or ``--nnodes``/``--node-rank``/``--rdzv-endpoint`` for several machines.
Each worker runs ``python -m fedcluster run CFG ...`` and finds its rank in the
environment. Torch threads per worker are set so the workers share the cores
instead of oversubscribing them.

On one machine nothing listens beyond loopback: torchrun's stores (the rendezvous's and
the one its workers share) are TCPStores, whose servers bind every interface, so while
torchrun runs in this process its TCPStore servers are handed a socket bound to
127.0.0.1 (:class:`LoopbackTCPStore`); the workers are told ``127.0.0.1`` as the master
address (``--local-addr``) and gloo/NCCL use the loopback interface. Over several
machines a warning says that torch.distributed is unauthenticated and unencrypted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

from ..config import ConfigError
from .group import CHECKED_ENV, is_loopback, warn_multi_node

__all__ = ["LaunchError", "launch_workers", "loopback_stores", "single_machine",
           "torchrun_args", "worker_threads"]

LOOPBACK = "127.0.0.1"

log = logging.getLogger(__name__)


class LaunchError(RuntimeError):
    """The workers could not be started, or one of them failed."""


def worker_threads(nproc: int, cores: int | None = None) -> int:
    """Torch threads per worker: this machine's usable cores shared out, at least 1."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    return max(1, cores // nproc)


def single_machine(nnodes: int, endpoint: str | None) -> bool:
    """Whether the workers all run here: one node, and no endpoint or a loopback one."""
    return nnodes == 1 and (endpoint is None or is_loopback(endpoint.rpartition(":")[0]))


def _loopback_store_class() -> type:
    import torch.distributed as dist

    class LoopbackTCPStore(dist.TCPStore):
        """A TCPStore whose server listens on 127.0.0.1 only (the stock one binds every
        interface): it is handed a socket bound there (``master_listen_fd``)."""

        def __init__(self, host_name: str, port: int, world_size: int | None = None,
                     is_master: bool = False, timeout: timedelta = timedelta(seconds=300),
                     wait_for_workers: bool = True, multi_tenant: bool = False,
                     master_listen_fd: int | None = None, use_libuv: bool = True) -> None:
            if is_master and master_listen_fd is None:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((LOOPBACK, port))
                sock.listen(socket.SOMAXCONN)
                port = sock.getsockname()[1]
                master_listen_fd = sock.detach()  # the store owns it now
            super().__init__(host_name, port, world_size=world_size, is_master=is_master,
                             timeout=timeout, wait_for_workers=wait_for_workers,
                             multi_tenant=multi_tenant, master_listen_fd=master_listen_fd,
                             use_libuv=use_libuv)

    return LoopbackTCPStore


@contextlib.contextmanager
def loopback_stores() -> Iterator[None]:
    """While inside, every TCPStore server this process starts (torchrun's rendezvous
    store and the store its workers share) listens on 127.0.0.1 only."""
    import torch.distributed as dist
    from torch.distributed.elastic.rendezvous import c10d_rendezvous_backend as c10d

    store = _loopback_store_class()
    saved: list[tuple[Any, Any]] = [(dist, dist.TCPStore), (c10d, c10d.TCPStore)]
    for module, _ in saved:
        module.TCPStore = store
    try:
        yield
    finally:
        for module, original in saved:
            module.TCPStore = original


def _loopback_interface() -> str | None:
    """The name of this machine's loopback interface (``lo``, ``lo0``), if it has one."""
    with contextlib.suppress(OSError):
        for _, name in socket.if_nameindex():
            if name in ("lo", "lo0"):
                return name
    return None


def torchrun_args(nproc: int, worker_argv: Sequence[str], nnodes: int = 1,
                  node_rank: int | None = None, endpoint: str | None = None,
                  timeout_s: float = 300.0) -> list[str]:
    """The torchrun command line (without the program name) for these workers.

    One node and no endpoint: a standalone rendezvous on a free local port. With
    ``node_rank`` the static rendezvous (node 0 hosts it at ``endpoint``, and global
    rank 0, which writes the run directory, is on node 0); without it torch's c10d
    rendezvous, which numbers nodes as they arrive.
    """
    if nproc < 1 or nnodes < 1:
        raise ConfigError(f"--nproc {nproc} --nnodes {nnodes}: expected counts >= 1")
    if node_rank is not None and not 0 <= node_rank < nnodes:
        raise ConfigError(f"--node-rank {node_rank}: expected 0 <= node rank < --nnodes {nnodes}")
    if nnodes > 1 and not endpoint:
        raise ConfigError(f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT (the address of "
                          "node 0, reachable from every node)")
    if endpoint is not None and not endpoint.rpartition(":")[2].isdigit():
        raise ConfigError(f"--rdzv-endpoint {endpoint!r}: expected HOST:PORT")
    wait = str(max(1, round(timeout_s)))
    if endpoint is None:
        rdzv = ["--standalone", "--local-addr", LOOPBACK]
    elif node_rank is not None:
        rdzv = ["--rdzv-backend", "static", "--rdzv-endpoint", endpoint,
                "--node-rank", str(node_rank), "--rdzv-conf", f"timeout={wait}"]
    else:
        rdzv = ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "fedcluster",
                "--rdzv-conf", f"join_timeout={wait}"]
    if endpoint is not None and single_machine(nnodes, endpoint):
        rdzv += ["--local-addr", LOOPBACK]
    # torchrun polls its workers every --monitor-interval seconds and tears the others
    # down at the first failure; at its default (0.1 s) that often came before the
    # survivors had named the failed rank and written summary.json: 1 s leaves them time
    # (and a finished run exits at most a second later)
    return [*rdzv, "--nnodes", str(nnodes), "--nproc-per-node", str(nproc), "--max-restarts",
            "0", "--monitor-interval", "1", "--module", "fedcluster", *worker_argv]


def _exit(failure: object) -> str:
    code = getattr(failure, "exitcode", None)
    if isinstance(code, int) and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _first_failure(failures: dict) -> tuple[int, object]:
    """The failure torchrun saw first. Its timestamps are whole seconds: within one, a
    worker killed by a signal (other than the SIGTERM torchrun stops workers with) comes
    before one that exited with an error, which is usually the other's consequence."""
    def order(item: tuple[int, object]) -> tuple[int, bool, int]:
        rank, failure = item
        code = getattr(failure, "exitcode", None)
        killed = isinstance(code, int) and code < 0 and -code != signal.SIGTERM
        return getattr(failure, "timestamp", 0), not killed, rank
    return min(failures.items(), key=order)


def launch_workers(args: list[str], threads: int) -> None:
    """Run torchrun with ``args`` in this process; raise :class:`LaunchError` on failure,
    :class:`~fedcluster.signals.Stopped` when a signal stopped the run (torchrun sends
    it on to the workers, which checkpoint and stop, and waits for them)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from ..signals import Stopped

    parsed = get_args_parser().parse_args(args)
    nnodes = int(str(parsed.nnodes).rpartition(":")[2])
    endpoint = None if parsed.standalone else parsed.rdzv_endpoint
    local = single_machine(nnodes, endpoint)
    if not local:
        warn_multi_node(str(endpoint).rpartition(":")[0], nnodes)
    os.environ[CHECKED_ENV] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # inherited by the workers
    lo = _loopback_interface() if local else None
    if lo is not None:  # the workers' gloo / NCCL sockets
        os.environ.setdefault("GLOO_SOCKET_IFNAME", lo)
        os.environ.setdefault("NCCL_SOCKET_IFNAME", lo)
    try:
        with loopback_stores() if local else contextlib.nullcontext():
            run(parsed)
    except ChildFailedError as e:
        rank, first = _first_failure(e.failures)
        msg = f"worker rank {rank} (local rank {first.local_rank}) failed first ({_exit(first)})"
        rest = sorted(r for r in e.failures if r != rank)
        if rest:
            msg += f"; rank(s) {', '.join(map(str, rest))} stopped after it"
        raise LaunchError(msg + " (messages above)") from None
    except SignalException as e:  # torchrun passed the signal on and waited for the workers
        raise Stopped(e.sigval) from None
    except Exception as e:  # rendezvous errors: too few nodes arrived, endpoint unreachable
        where = f" at {parsed.rdzv_endpoint}" if parsed.rdzv_endpoint else ""
        raise LaunchError(f"rendezvous{where} failed: {type(e).__name__}: {e}") from None
