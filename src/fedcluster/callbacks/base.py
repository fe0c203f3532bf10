"""The callback interface: the loop's only way to reach the outside world.

A callback overrides the events it cares about. ``on_round_end`` may return True
to ask the loop to stop. A callback that raises is logged once and then ignored
for the rest of the run: no callback can stop training by failing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..fl.client import Update
from ..records import RoundResult, RunContext, RunSummary

__all__ = ["Callback", "CallbackList"]

log = logging.getLogger(__name__)


class Callback:
    def on_run_start(self, ctx: RunContext) -> None: ...

    def on_round_start(self, round_: int, clients: Sequence[int]) -> None: ...

    def on_client_done(self, round_: int, update: Update) -> None: ...

    def on_round_end(self, result: RoundResult) -> bool | None: ...

    def on_run_end(self, summary: RunSummary) -> None: ...


class CallbackList:
    """Dispatches events to callbacks, isolating their failures."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)
        self.failed: set[int] = set()

    def _call(self, event: str, *args: object) -> list[object]:
        out = []
        for i, cb in enumerate(self.callbacks):
            if i in self.failed:
                continue
            try:
                out.append(getattr(cb, event)(*args))
            except Exception:
                self.failed.add(i)
                log.exception("callback %s failed in %s; it is disabled for the rest of the run",
                              type(cb).__name__, event)
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
        self._call("on_run_end", summary)
