"""Stopping a run on SIGTERM / SIGINT at a consistent point.

:func:`stop_on_signals` (used by the command line, never at import) turns the first
SIGTERM or SIGINT into a :class:`Stopped` exception in the main thread: the round
loop catches it, keeps the state of the last finished round, writes the checkpoint,
the models and ``summary.json``, and the command exits 128 + the signal number
(143 for SIGTERM, 130 for SIGINT). Inside :func:`critical` (a checkpoint being
written) the exception waits until the block ends. A second signal exits at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType

__all__ = ["Stopped", "critical", "shielded", "stop_on_signals"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """The run was asked to stop by a signal (a BaseException, like KeyboardInterrupt,
    so that code catching Exception does not swallow it)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"stopped by {self.name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_received: list[int] = []  # signals received while installed
_depth = 0  # nesting of critical sections
_deferred: list[int] = []  # a signal received inside a critical section


def _handle(signum: int, frame: FrameType | None) -> None:
    if _received:  # the second signal: no more waiting
        print(f"fedcluster: {signal.Signals(signum).name} again, exiting now", file=sys.stderr)
        os._exit(128 + signum)
    _received.append(signum)
    if _depth:
        _deferred.append(signum)
        return
    raise Stopped(signum)


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """A block a first signal does not interrupt; its :class:`Stopped` comes at the end."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _deferred:
            raise Stopped(_deferred.pop())


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """A block a first signal neither interrupts nor follows with :class:`Stopped`: the run
    is already ending (writing its last files after an error or a stop)."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth:
            _deferred.clear()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`Stopped` (see the module
    docstring); the previous handlers come back at its end. Main thread only."""
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    _received.clear()
    _deferred.clear()
    for s in SIGNALS:
        signal.signal(s, _handle)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
