"""The push-notification interface: a message, a service that sends it, and its errors.

A new service is one class with ``name``, ``max_chars``, ``min_interval``, ``send`` and
``close`` (see :class:`Notifier`); :class:`~fedcluster.notify.sender.Sender` runs it on
a background thread with rate limiting, retries on :class:`RetryAfter` and splitting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Message", "Notifier", "RetryAfter", "SendError", "split_text", "text_units"]


@dataclass(frozen=True)
class Message:
    """One notification: ``event`` is start, round, end or error; ``text`` is plain text;
    ``data`` holds the same facts as numbers for machine readers (webhooks)."""

    event: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


class SendError(RuntimeError):
    """The service answered with an error (the text never holds a secret)."""


class RetryAfter(SendError):
    """The service asked to wait ``seconds`` before trying again (HTTP 429)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"rate limited: retry after {seconds:g}s")
        self.seconds = seconds


class Notifier(Protocol):
    name: str  # for logs, e.g. "telegram"
    max_chars: int | None  # longest text one message may carry (UTF-16 units), None: no limit
    min_interval: float  # seconds to leave between two messages

    def send(self, message: Message) -> None:
        """Deliver one message or raise (RetryAfter when asked to wait)."""
        ...

    def close(self) -> None: ...


def text_units(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` UTF-16 units: at line breaks where
    possible (the break is dropped), inside a line only when the line alone is too long."""
    if limit < 2:
        raise ValueError(f"limit must be >= 2, got {limit}")
    pieces: list[str] = []
    current = ""
    for line in text.split("\n"):
        candidate = line if not current else f"{current}\n{line}"
        if text_units(candidate) <= limit:
            current = candidate
            continue
        if current:
            pieces.append(current)
        while text_units(line) > limit:
            cut = _cut_point(line, limit)
            pieces.append(line[:cut])
            line = line[cut:]
        current = line
    if current or not pieces:
        pieces.append(current)
    return pieces


def _cut_point(line: str, limit: int) -> int:
    """The longest prefix of ``line`` within ``limit`` units (never splitting a surrogate
    pair, i.e. a character outside the BMP)."""
    units, cut = 0, 0
    for ch in line:
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            break
        cut += 1
    return cut
