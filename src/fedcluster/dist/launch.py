"""``fedcluster run CFG --nproc N``: start N local workers through torch.distributed.run.

As torchtune's ``tune run`` does, the CLI hands torch's own launcher (torchrun) its
arguments instead of starting processes itself: a standalone rendezvous on this
machine, or ``--nnodes``/``--node-rank``/``--rdzv-endpoint`` for several machines.
Each worker runs ``python -m fedcluster run CFG ...`` and finds its rank in the
environment. Torch threads per worker are set so the workers share the cores
instead of oversubscribing them.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Sequence

from ..config import ConfigError
from .group import CHECKED_ENV, warn_if_public

__all__ = ["LaunchError", "launch_workers", "torchrun_args", "worker_threads"]

log = logging.getLogger(__name__)


class LaunchError(RuntimeError):
    """The workers could not be started, or one of them failed."""


def worker_threads(nproc: int, cores: int | None = None) -> int:
    """Torch threads per worker: this machine's usable cores shared out, at least 1."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    return max(1, cores // nproc)


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
        rdzv = ["--standalone"]
    elif node_rank is not None:
        rdzv = ["--rdzv-backend", "static", "--rdzv-endpoint", endpoint,
                "--node-rank", str(node_rank), "--rdzv-conf", f"timeout={wait}"]
    else:
        rdzv = ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "fedcluster",
                "--rdzv-conf", f"join_timeout={wait}"]
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


def launch_workers(args: list[str], threads: int) -> None:
    """Run torchrun with ``args`` in this process; raise :class:`LaunchError` on failure,
    :class:`~fedcluster.signals.Stopped` when a signal stopped the run (torchrun sends
    it on to the workers, which checkpoint and stop, and waits for them)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from ..signals import Stopped

    parsed = get_args_parser().parse_args(args)
    if parsed.rdzv_endpoint:
        warn_if_public(parsed.rdzv_endpoint.rpartition(":")[0])
    os.environ[CHECKED_ENV] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # inherited by the workers
    try:
        run(parsed)
    except ChildFailedError as e:
        rank, first = e.get_first_failure()
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
