"""Push notifications as a callback: start, round summaries every N rounds, end, failure.

Messages are queued to one background :class:`~fedcluster.notify.Sender` per service,
so the training thread never waits on the network; at run end it waits at most
``flush_seconds`` for the queue to drain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from ..config import ConfigError, NotifyConfig
from ..notify import Message, MissingDependency, Notifier, Sender
from ..notify.messages import end_message, round_message, start_message
from ..records import RoundResult, RunContext, RunSummary
from .base import Callback

__all__ = ["Notify", "notifiers_from_config"]

log = logging.getLogger(__name__)


def notifiers_from_config(cfg: NotifyConfig) -> list[tuple[Notifier, int]]:
    """The services ``cfg`` turns on, each with its ``every``; ConfigError with an install
    hint when a SOCKS proxy is asked for and PySocks is missing."""
    from ..notify import TelegramNotifier, WebhookNotifier

    out: list[tuple[Notifier, int]] = []
    try:
        if cfg.telegram.enabled:
            t = cfg.telegram
            out.append((TelegramNotifier(t.token, t.chat_id, t.api_url, t.proxy), t.every))
        if cfg.webhook.url:
            out.append((WebhookNotifier(cfg.webhook.url), cfg.webhook.every))
    except MissingDependency as e:
        raise ConfigError(f"notify.telegram.proxy: {e}") from None
    return out


class Notify(Callback):
    def __init__(self, channels: Sequence[tuple[Notifier, int]], secrets: Sequence[str] = (),
                 flush_seconds: float = 5.0) -> None:
        self.channels = list(channels)
        self.secrets = [s for s in secrets if s]
        self.flush_seconds = flush_seconds
        self.senders: list[tuple[Sender, int]] = []
        self.name, self.rounds = "", 0

    def on_run_start(self, ctx: RunContext) -> None:
        self.name, self.rounds = ctx.config.name, ctx.config.rounds
        self.senders = [(Sender(n, self.secrets), every) for n, every in self.channels]
        self._submit(start_message(ctx))

    def on_round_end(self, result: RoundResult) -> None:
        # the last round is reported by the end message
        if result.round >= self.rounds:
            return
        message = round_message(self.name, result, self.rounds)
        for sender, every in self.senders:
            if every > 0 and result.round % every == 0:
                sender.submit(message)

    def on_run_end(self, summary: RunSummary) -> None:
        self._submit(end_message(summary))
        deadline = time.monotonic() + self.flush_seconds
        for sender, _ in self.senders:  # they drain in parallel; one shared deadline
            sender.close(max(0.0, deadline - time.monotonic()))

    def _submit(self, message: Message) -> None:
        for sender, _ in self.senders:
            sender.submit(message)
