"""Tensor collectives for the distributed engine, with failures that name the lost rank.

Only tensors cross the wire (``all_gather``, ``all_reduce``, ``broadcast``): never a
``*_object`` collective, never pickle. Before each collective a rank records how far
it got in the rendezvous store; when a collective fails (a peer died, or stopped
answering for ``run.timeout_s``), the survivors read those marks and name the ranks
that never arrived, or that reported their own failure.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import torch
import torch.distributed as dist

from ..dist import DistInfo

__all__ = ["Collectives", "DistributedError"]

log = logging.getLogger(__name__)


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
        """Explain a failed collective: which ranks failed or never arrived."""
        head = (f"rank {self.rank}: {what} (collective #{self.seq}) failed "
                f"(timeout {self.info.timeout_s:g} s)")
        store = self.info.store
        failed, behind = [], []
        try:
            store.set_timeout(timedelta(seconds=5))
            for r in range(self.world):
                if r == self.rank:
                    continue
                if store.check([f"failed/{r}"]):
                    failed.append(f"rank {r} failed: {store.get(f'failed/{r}').decode()}")
                elif not store.check([f"at/{r}"]) or int(store.get(f"at/{r}")) < self.seq:
                    behind.append(r)
        except Exception:
            return (f"{head}: {error}; the rendezvous store is unreachable as well, so the "
                    "failed rank is unknown (node 0 hosts the store: it may be the one lost)")
        if failed:
            return f"{head}: " + "; ".join(failed)
        if behind:
            names = ", ".join(str(r) for r in behind)
            return (f"{head}: rank(s) {names} stopped responding before reaching it "
                    f"(died or hung); {error}")
        return f"{head}: a rank died inside the collective; {error}"
