"""Where a round's time goes: named wall-clock sections, summed per round.

``run.profile = true`` (``fedcluster run --profile``) records, for every round,
the seconds spent training, evaluating, aggregating, clustering and in I/O
(callbacks: metrics file, checkpoints, console), written into the round's line of
``metrics.jsonl`` under ``"profile"``. On a GPU each section synchronises the
device before reading the clock, so asynchronous kernels are charged to the
section that launched them (this costs a little speed: profile only when asking).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

__all__ = ["SECTIONS", "Profiler"]

SECTIONS = ("train", "eval", "aggregate", "cluster", "io")


class Profiler:
    """Sums the time of named sections until :meth:`pop`; a disabled one records nothing.

    ``clock`` (seconds, default ``time.perf_counter``) is there for tests to drive.
    """

    def __init__(self, enabled: bool = False, device: torch.device | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.enabled = enabled
        self.clock = clock
        self.cuda = device is not None and device.type == "cuda"
        self.totals: dict[str, float] = {}
        self._children: list[float] = []  # time of nested sections, per open section

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Charge the time of the ``with`` block to ``name``, less the time of sections
        nested inside it (each second is charged to exactly one section)."""
        if not self.enabled:
            yield
            return
        self._sync()
        t0 = self.clock()
        self._children.append(0.0)
        try:
            yield
        finally:
            self._sync()
            elapsed = self.clock() - t0
            inner = self._children.pop()
            self.totals[name] = self.totals.get(name, 0.0) + elapsed - inner
            if self._children:
                self._children[-1] += elapsed

    def pop(self) -> dict[str, float] | None:
        """The sums so far (every section of SECTIONS present, in seconds) and a fresh start;
        None when disabled."""
        if not self.enabled:
            return None
        out = {name: round(self.totals.pop(name, 0.0), 6) for name in SECTIONS}
        out.update({k: round(v, 6) for k, v in self.totals.items()})
        self.totals = {}
        return out
