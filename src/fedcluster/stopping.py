"""Early stopping: the reference program's thresholds on round-to-round changes."""

from __future__ import annotations

import logging
import math

from .config import StopConfig
from .records import RoundResult

__all__ = ["early_stop"]

log = logging.getLogger(__name__)


def early_stop(stop: dict, result: RoundResult, cfg: StopConfig) -> tuple[dict, bool]:
    """The reference's thresholds: each enabled criterion (threshold > 0) must hold for
    ``patience`` rounds in a row: ``|acc_r - acc_{r-1}| < accuracy_delta`` and
    ``|loss_r - loss_{r-1}| < loss_delta``. ``stop`` is the state the previous round left
    (``{}`` at first); returns the new one and whether to stop."""
    if not (cfg.accuracy_delta > 0 or cfg.loss_delta > 0):
        return stop, False
    calm = stop.get("calm", 0)
    if stop:
        checks = []
        if cfg.accuracy_delta > 0:
            checks.append(abs(result.accuracy - stop["accuracy"]) < cfg.accuracy_delta)
        if cfg.loss_delta > 0:
            checks.append(abs(result.loss - stop["loss"]) < cfg.loss_delta)
        steady = all(checks) and not any(math.isnan(v) for v in (result.accuracy, result.loss))
        calm = calm + 1 if steady else 0
    new = {"accuracy": result.accuracy, "loss": result.loss, "calm": calm}
    if calm >= cfg.patience:
        log.info("early stop at round %d: changes below the stop thresholds", result.round)
        return new, True
    return new, False
