"""Delivery off the training thread: one background thread per service.

``submit`` never blocks (a full queue drops the message and says so once). The thread
keeps at least ``min_interval`` seconds between messages, waits ``retry_after`` on
HTTP 429 (a few times at most), splits long texts, and logs the first failure of its
service as a warning (later ones at debug level), with every secret masked (its own
logs, the texts it sends, and urllib3's debug lines, which show request paths).
``close`` waits a bounded time for the queue to drain, then gives up on what is left.
The run's final result and its failure (events ``end`` and ``error``) go out before any
progress message still waiting, so a fast run's flood of round messages never holds
them back past ``close``'s bound.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import Iterable

from ..secrets import mask_text
from .base import Message, Notifier, RetryAfter, split_text

__all__ = ["MaskSecrets", "Sender"]

log = logging.getLogger(__name__)

_STOP = object()
URGENT = frozenset({"end", "error"})  # sent before the progress messages still waiting
URLLIB3_LOGGER = "urllib3.connectionpool"  # logs request paths (the bot token) at debug level


class MaskSecrets(logging.Filter):
    """Rewrites a logger's records so that no secret reaches any handler (urllib3 logs
    request paths at debug level, and Telegram's path holds the bot token)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = mask_text(record.getMessage(), self.secrets)
            record.args = None
        return True


class Sender:
    """Sends one service's messages on its own daemon thread."""

    def __init__(self, notifier: Notifier, secrets: Iterable[str] = (), max_queue: int = 1000,
                 max_retries: int = 3, max_wait: float = 300.0) -> None:
        self.notifier = notifier
        own = getattr(notifier, "secrets", ())  # a service may name its own secrets
        self.secrets = [s for s in (*secrets, *own) if s]
        self._mask = MaskSecrets(self.secrets)
        logging.getLogger(URLLIB3_LOGGER).addFilter(self._mask)
        self.max_retries, self.max_wait = max_retries, max_wait
        self.sent = self.failed = self.dropped = 0
        # (priority, arrival, message): urgent first, else in order of arrival
        self._queue: queue.PriorityQueue[tuple[int, int, object]] = queue.PriorityQueue(max_queue)
        self._arrival = itertools.count()
        self._abandon = threading.Event()
        self._warned = False
        self._last = -float("inf")
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"fedcluster-notify-{notifier.name}")
        self._thread.start()

    def submit(self, message: Message) -> None:
        """Queue ``message`` (split to the service's size limit); never blocks."""
        text = mask_text(message.text, self.secrets)
        limit = self.notifier.max_chars
        for piece in split_text(text, limit) if limit else [text]:
            try:
                self._queue.put_nowait((0 if message.event in URGENT else 1,
                                        next(self._arrival),
                                        Message(message.event, piece, message.data)))
            except queue.Full:
                self.dropped += 1
                if self.dropped == 1:
                    log.warning("%s: too many messages waiting; dropping new ones",
                                self.notifier.name)

    def close(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` s for queued messages to go out; True when all went."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self._queue.put((2, next(self._arrival), _STOP), timeout=timeout)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        done = not self._thread.is_alive()
        if not done:
            self._abandon.set()
            log.warning("%s: gave up on %d unsent message(s) at exit after %.0fs",
                        self.notifier.name, self._queue.qsize(), timeout)
        else:
            self.notifier.close()
            logging.getLogger(URLLIB3_LOGGER).removeFilter(self._mask)
        return done

    def _loop(self) -> None:
        while True:
            _, _, item = self._queue.get()
            if item is _STOP or self._abandon.is_set():
                return
            assert isinstance(item, Message)
            self._deliver(item)

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless abandoned; False when abandoned."""
        return not self._abandon.wait(max(0.0, seconds))

    def _deliver(self, message: Message) -> None:
        for _ in range(self.max_retries + 1):
            if not self._wait(self._last + self.notifier.min_interval - time.monotonic()):
                return
            try:
                self.notifier.send(message)
            except RetryAfter as e:
                self._last = time.monotonic()
                log.debug("%s: rate limited, waiting %.1fs", self.notifier.name, e.seconds)
                if not self._wait(min(e.seconds, self.max_wait)):
                    return
                continue
            except Exception as e:  # any failure of the service must stay on this thread
                self._last = time.monotonic()
                self._fail(f"{type(e).__name__}: {e}")
                return
            self._last = time.monotonic()
            self.sent += 1
            return
        self._fail(f"still rate limited after {self.max_retries} retries")

    def _fail(self, why: str) -> None:
        self.failed += 1
        why = mask_text(why, self.secrets)
        if not self._warned:
            self._warned = True
            log.warning("%s: could not send a notification (%s); training goes on, later "
                        "messages will still be tried, further failures are logged at debug "
                        "level", self.notifier.name, why)
        else:
            log.debug("%s: could not send a notification (%s)", self.notifier.name, why)
