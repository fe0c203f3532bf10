"""The run directory: resolved config, partition, per-round metrics, summary and log.

``metrics.jsonl`` gets one JSON object per round, written as the round ends, so a
crash never loses a finished round and figures can be drawn while a run goes on. A
line is appended whole or not at all: a write that fails part-way (a full disk) is
cut back to the last whole line and stops the run with a :class:`RunDirError` naming
the file (this callback is critical, see :mod:`.base`). ``config.toml``,
``partition.json`` and ``summary.json`` are replaced atomically.

A resumed run (``resume_round``, else the context's ``start_round`` when above 0) keeps
the metrics of rounds up to that round, drops the rest and the old summary, and appends
from there.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config import config_to_toml
from ..fl.attack import attack_of
from ..records import RoundResult, RunContext, RunSummary
from ..rundir import RunDirError, atomic_write
from .base import Callback

__all__ = ["RunFiles"]

METRICS = "metrics.jsonl"
SUMMARY = "summary.json"


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a write may take only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _rounds_up_to(text: str, last: int) -> str:
    """The lines of a metrics file whose round is at most ``last`` (a torn or foreign
    line is dropped)."""
    kept = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("round"), int) \
                and record["round"] <= last:
            kept.append(line + "\n")
    return "".join(kept)


class RunFiles(Callback):
    critical = True

    def __init__(self, run_dir: Path, resume_round: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.resume_round = resume_round
        self._fd: int | None = None  # metrics.jsonl, opened for appending
        self._size = 0  # bytes of whole lines in it
        self._log: logging.Handler | None = None

    @contextmanager
    def _writing(self, name: str) -> Iterator[None]:
        """Turn an OSError while writing ``name`` into a RunDirError naming the file."""
        try:
            yield
        except OSError as e:
            raise RunDirError(f"cannot write {self.run_dir / name}: {e.strerror or e}; "
                              "the run is stopped") from e

    def on_run_start(self, ctx: RunContext) -> None:
        try:
            self._start(ctx)
        except BaseException:
            self._close()
            raise

    def _start(self, ctx: RunContext) -> None:
        with self._writing("."):
            self.run_dir.mkdir(parents=True, exist_ok=True)
        with self._writing("run.log"):
            self._log = logging.FileHandler(self.run_dir / "run.log", encoding="utf-8")
        self._log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("fedcluster").addHandler(self._log)
        with self._writing("config.toml"):
            atomic_write(self.run_dir / "config.toml", config_to_toml(ctx.config))
        train, test = ctx.federation.label_counts()
        partition = {
            "num_classes": ctx.federation.dataset.num_classes,
            "train": train.tolist(),
            "eval": test.tolist(),
            "groups": ctx.federation.groups.tolist(),  # each client's true group
            # the simulated attackers ([attack], chosen by the seed; fl/attack.py)
            "attackers": sorted(attack_of(ctx.config).attackers),
        }
        with self._writing("partition.json"):
            atomic_write(self.run_dir / "partition.json", json.dumps(partition))
        last = self.resume_round if self.resume_round is not None else ctx.start_round
        if self.resume_round is not None or last > 0:
            self._cut_metrics(last)
        with self._writing(METRICS):
            self._fd = os.open(self.run_dir / METRICS, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                               0o666)
            self._size = os.fstat(self._fd).st_size
        logging.getLogger("fedcluster").info(
            "run %s: %d clients, %d parameters on %s", ctx.config.name,
            ctx.federation.num_clients, ctx.model.numel, ctx.device)

    def _cut_metrics(self, last: int) -> None:
        """Keep the metrics of rounds up to ``last``; remove the summary of the run resumed."""
        path = self.run_dir / METRICS
        with self._writing(METRICS):
            if path.exists():
                atomic_write(path, _rounds_up_to(path.read_text(encoding="utf-8"), last))
        with self._writing(SUMMARY):
            (self.run_dir / SUMMARY).unlink(missing_ok=True)

    def on_round_end(self, result: RoundResult) -> None:
        assert self._fd is not None, "on_round_end before on_run_start"
        line = (json.dumps(result.to_json()) + "\n").encode("utf-8")
        with self._writing(METRICS):
            try:
                _write_all(self._fd, line)
            except OSError:
                os.ftruncate(self._fd, self._size)  # no torn line for readers to trip on
                raise
        self._size += len(line)

    def on_run_end(self, summary: RunSummary) -> None:
        try:
            if self._fd is not None:
                with self._writing(METRICS):
                    os.fsync(self._fd)
            with self._writing(SUMMARY):
                atomic_write(self.run_dir / SUMMARY, json.dumps(_summary(summary), indent=1))
        finally:
            self._close()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._log is not None:
            logging.getLogger("fedcluster").removeHandler(self._log)
            self._log.close()
            self._log = None


def _summary(summary: RunSummary) -> dict[str, Any]:
    """What ``summary.json`` holds. A run that ended on an error never reads as completed."""
    final = summary.final
    reason = summary.reason
    if summary.error is not None and reason == "completed":
        reason = "error"
    return {
        "name": summary.context.config.name,
        "rounds": summary.round,
        "seconds": round(summary.seconds, 3),
        "stopped_early": summary.stopped_early,
        "reason": reason,
        "error": summary.error,
        "final": final.to_json() if final else None,
    }
