"""Tensor collectives for the distributed engine, with failures that name the lost rank.

Only tensors cross the wire (``all_gather``, ``all_reduce``, ``broadcast``): never a
``*_object`` collective, never pickle. Before each collective a rank records how far
it got in the rendezvous store; when a collective fails (a peer died, or stopped
answering for ``run.timeout_s``), the survivors read those marks and name the ranks
that never arrived, or that reported their own failure. When every rank had arrived,
each survivor reports in and waits up to ``REPORT_GRACE_S`` for the others: the ranks
that never report died or hung inside the collective. SIGTERM (torchrun stopping the
survivors once it sees a worker die) is held off meanwhile, so the diagnosis is made.
A survivor that gets that SIGTERM outside any collective finds the lost ranks by their
heartbeat (``group.Heartbeat``), which stands still: see :meth:`Collectives.lost`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import torch
import torch.distributed as dist

from .group import HEARTBEAT_S, DistInfo

__all__ = ["LOST_AFTER_BEATS", "Collectives", "DistributedError"]

log = logging.getLogger(__name__)


REPORT_GRACE_S = 1.0  # how long survivors of a failed collective wait for each other
LOST_AFTER_BEATS = 4  # a rank whose heartbeat stands still this many beats is lost


@contextlib.contextmanager
def _sigterm_held() -> Iterator[None]:
    """Record instead of act on SIGTERM inside the block (main thread only); a process
    with the default action still terminates after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if received and previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGTERM)
        # a handler of the caller's (the CLI's) is not called: the DistributedError about
        # to be raised unwinds the run the same way, with the better message


class DistributedError(RuntimeError):
    """A collective failed: another rank died, hung, or was lost to the network."""


class Collectives:
    """Sum, gather and broadcast tensors over the process group of ``info``."""

    def __init__(self, info: DistInfo) -> None:
        self.info = info
        self.rank, self.world = info.rank, info.world_size
        self.device = info.device if info.backend == "nccl" else torch.device("cpu")
        self.seq = 0

    def _run(self, what: str, fn):  # noqa: ANN001, ANN202 (a thunk around one collective)
        self.seq += 1
        try:
            self.info.store.set(f"at/{self.rank}", str(self.seq))
            return fn()
        except Exception as e:
            raise DistributedError(self.diagnose(what, e)) from e

    def all_gather(self, t: torch.Tensor, what: str = "all_gather") -> torch.Tensor:
        """``[world, *t.shape]``: every rank's ``t`` (all of the same shape and dtype)."""
        src = t.to(self.device).contiguous()
        out = [torch.empty_like(src) for _ in range(self.world)]
        self._run(what, lambda: dist.all_gather(out, src))
        return torch.stack(out).to(t.device)

    def all_reduce(self, t: torch.Tensor, what: str = "all_reduce",
                   op: dist.ReduceOp = dist.ReduceOp.SUM) -> torch.Tensor:
        """The elementwise reduction (sum by default) of ``t`` over ranks, a new tensor."""
        buf = t.to(self.device, copy=True).contiguous()
        self._run(what, lambda: dist.all_reduce(buf, op=op))
        return buf.to(t.device)

    def broadcast(self, t: torch.Tensor, what: str = "broadcast", src: int = 0) -> torch.Tensor:
        """Rank ``src``'s ``t`` on every rank, a new tensor."""
        buf = t.to(self.device, copy=True).contiguous()
        self._run(what, lambda: dist.broadcast(buf, src=src))
        return buf.to(t.device)

    def report_failure(self, message: str) -> None:
        """Leave this rank's own error in the store so the others can name it."""
        try:
            self.info.store.set(f"failed/{self.rank}", message[:500])
        except Exception:  # the store may be gone too; the others will time out
            log.debug("could not record the failure in the store", exc_info=True)

    def diagnose(self, what: str, error: BaseException) -> str:
        """Explain a failed collective: which ranks failed, never arrived, or never
        reported back after it."""
        head = (f"rank {self.rank}: {what} (collective #{self.seq}) failed "
                f"(timeout {self.info.timeout_s:g} s)")
        store = self.info.store
        failed, behind, silent = [], [], []
        with _sigterm_held():
            try:
                store.set_timeout(timedelta(seconds=5))
                store.set(f"alive/{self.rank}/{self.seq}", "1")
                for r in range(self.world):
                    if r == self.rank:
                        continue
                    if store.check([f"failed/{r}"]):
                        failed.append(f"rank {r} failed: {store.get(f'failed/{r}').decode()}")
                    elif not store.check([f"at/{r}"]) or int(store.get(f"at/{r}")) < self.seq:
                        behind.append(r)
                if not failed and not behind:
                    silent = self._silent(store)
            except Exception:
                return (f"{head}: {error}; the rendezvous store is unreachable as well, so "
                        "the failed rank is unknown (node 0 hosts the store: it may be the "
                        "one lost)")
        if failed:
            return f"{head}: " + "; ".join(failed)
        if behind:
            names = ", ".join(str(r) for r in behind)
            return (f"{head}: rank(s) {names} stopped responding before reaching it "
                    f"(died or hung); {error}")
        if silent:
            names = ", ".join(str(r) for r in silent)
            return (f"{head}: rank(s) {names} stopped responding inside it (died or hung: "
                    f"no report within {REPORT_GRACE_S:g} s after the failure); {error}")
        return f"{head}: every rank reported back, the collective itself failed; {error}"

    def lost(self) -> list[int]:
        """The other ranks whose heartbeat (``group.Heartbeat``) stands still for
        :data:`LOST_AFTER_BEATS` beats: they died or hung. Empty when the store is gone."""
        store = self.info.store
        others = [r for r in range(self.world) if r != self.rank]

        def beats() -> dict[int, bytes | None]:
            return {r: store.get(f"beat/{r}") if store.check([f"beat/{r}"]) else None
                    for r in others}

        with _sigterm_held():
            try:
                store.set_timeout(timedelta(seconds=5))
                before = beats()
                time.sleep(LOST_AFTER_BEATS * HEARTBEAT_S)
                after = beats()
            except Exception:
                log.debug("could not read the heartbeats", exc_info=True)
                return []
        return [r for r in others if after[r] is None or after[r] == before[r]]

    def _silent(self, store: dist.Store) -> list[int]:
        """The other ranks that do not report this collective's failure within the grace."""
        waiting = [r for r in range(self.world) if r != self.rank]
        deadline = time.monotonic() + REPORT_GRACE_S
        while waiting and time.monotonic() < deadline:
            time.sleep(0.05)
            waiting = [r for r in waiting if not store.check([f"alive/{r}/{self.seq}"])]
        return waiting
