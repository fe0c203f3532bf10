"""Early stop on the change of accuracy and loss between rounds (the reference's thresholds).

Each enabled criterion (threshold > 0) must hold for ``patience`` rounds in a row:
``|acc_r - acc_{r-1}| < accuracy_delta`` and ``|loss_r - loss_{r-1}| < loss_delta``.
"""

from __future__ import annotations

import logging
import math

from ..config import StopConfig
from ..records import RoundResult
from .base import Callback

__all__ = ["EarlyStop"]

log = logging.getLogger(__name__)


class EarlyStop(Callback):
    def __init__(self, cfg: StopConfig) -> None:
        self.cfg = cfg
        self.previous: RoundResult | None = None
        self.calm = 0

    @property
    def enabled(self) -> bool:
        return self.cfg.accuracy_delta > 0 or self.cfg.loss_delta > 0

    def on_round_end(self, result: RoundResult) -> bool:
        prev, self.previous = self.previous, result
        if not self.enabled or prev is None:
            return False
        checks = []
        if self.cfg.accuracy_delta > 0:
            checks.append(abs(result.accuracy - prev.accuracy) < self.cfg.accuracy_delta)
        if self.cfg.loss_delta > 0:
            checks.append(abs(result.loss - prev.loss) < self.cfg.loss_delta)
        calm = all(checks) and not any(math.isnan(v) for v in (result.accuracy, result.loss))
        self.calm = self.calm + 1 if calm else 0
        if self.calm >= self.cfg.patience:
            log.info("early stop at round %d: changes below the stop thresholds", result.round)
            return True
        return False
