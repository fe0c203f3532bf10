"""The callback interface: the loop's only way to reach the outside world.

A callback overrides the events it cares about. ``on_round_end`` may return True
to ask the loop to stop. A callback that raises is logged once and then ignored
for the rest of the run: a figure or a notification that fails never stops training.
The exception is a *critical* callback (``critical = True``: the ones writing the
run's record, metrics and models): its error is raised after the event has reached
the other callbacks, so a run whose record cannot be written (a full disk) stops and
fails instead of reporting success. A critical callback is never disabled: it still
gets ``on_run_end`` to record the error and close its files, and errors it raises
there while the run is already failing are logged, so the first error is the one
that propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

from ..fl.client import Update
from ..records import RoundResult, RunContext, RunSummary

__all__ = ["Callback", "CallbackList"]

log = logging.getLogger(__name__)


class Callback:
    #: True when a failure of this callback must stop the run (see the module docstring)
    critical: ClassVar[bool] = False

    def on_run_start(self, ctx: RunContext) -> None: ...

    def on_round_start(self, round_: int, clients: Sequence[int]) -> None: ...

    def on_client_done(self, round_: int, update: Update) -> None: ...

    def on_round_end(self, result: RoundResult) -> bool | None: ...

    def on_run_end(self, summary: RunSummary) -> None: ...


class CallbackList:
    """Dispatches events to callbacks, isolating the failures of all but critical ones."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)
        self.failed: set[int] = set()

    def _call(self, event: str, *args: object, failing: bool = False) -> list[object]:
        """Each active callback's answer to ``event``. Raises the first critical
        callback's error once all have been called, unless the run is ``failing``
        already (then it is logged)."""
        out: list[object] = []
        first: Exception | None = None
        for i, cb in enumerate(self.callbacks):
            if i in self.failed:
                continue
            try:
                out.append(getattr(cb, event)(*args))
            except Exception as e:
                if not cb.critical:
                    self.failed.add(i)
                    log.exception("callback %s failed in %s; it is disabled for the rest of "
                                  "the run", type(cb).__name__, event)
                elif failing:
                    log.error("callback %s failed in %s while the run was ending on an "
                              "error: %s", type(cb).__name__, event, e)
                elif first is None:
                    first = e
                else:
                    log.error("callback %s failed in %s too: %s", type(cb).__name__, event, e)
        if first is not None:
            raise first
        return out

    def run_start(self, ctx: RunContext) -> None:
        self._call("on_run_start", ctx)

    def round_start(self, round_: int, clients: Sequence[int]) -> None:
        self._call("on_round_start", round_, clients)

    def client_done(self, round_: int, update: Update) -> None:
        self._call("on_client_done", round_, update)

    def round_end(self, result: RoundResult) -> bool:
        return any(bool(r) for r in self._call("on_round_end", result))

    def run_end(self, summary: RunSummary) -> None:
        self._call("on_run_end", summary, failing=summary.error is not None)
