"""TensorBoard scalars and histograms under ``<run>/tensorboard`` (optional extra).

Scalars per round: overall and per-cluster accuracy, top-5 accuracy, loss and size,
the clustering SSE, the clients that changed cluster, ARI and NMI against the true groups
(where known), the clients' accuracy mean / p10 / min, and the round time; histograms:
the sampled clients' training losses and accuracies. Needs the ``tensorboard`` package
(``pip install "fedcluster[tensorboard]"``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..extras import require_extra
from ..records import RoundResult, RunContext, RunSummary
from .base import Callback
from .scalars import round_scalars

__all__ = ["TENSORBOARD_HINT", "TensorBoard", "check_tensorboard"]

TENSORBOARD_HINT = ('tensorboard.enabled = true needs the tensorboard package: '
                    'pip install "fedcluster[tensorboard]" (or pip install tensorboard)')


def check_tensorboard() -> None:
    """ConfigError with an install hint when the tensorboard package is missing."""
    require_extra("tensorboard")


class TensorBoard(Callback):
    def __init__(self, log_dir: Path) -> None:
        check_tensorboard()
        self.log_dir = Path(log_dir)
        self.writer = None

    def on_run_start(self, ctx: RunContext) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.log_dir))
        cfg = ctx.config
        self.writer.add_text("config", f"{cfg.name}: {cfg.data.dataset}, "
                             f"{ctx.federation.num_clients} clients, k={cfg.cluster.k}, "
                             f"{cfg.rounds} rounds, {cfg.model.name}")

    def on_round_end(self, result: RoundResult) -> None:
        r = result.round
        for tag, value in round_scalars(result).items():
            self.writer.add_scalar(tag, value, r)  # type: ignore[union-attr]
        for tag, values in (("clients/train_loss", [c.train_loss for c in result.clients]),
                            ("clients/accuracy", [c.accuracy for c in result.clients])):
            v = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
            v = v[~np.isnan(v)]
            if v.size:
                self.writer.add_histogram(tag, v, r)  # type: ignore[union-attr]
        self.writer.flush()  # type: ignore[union-attr]

    def on_run_end(self, summary: RunSummary) -> None:
        if self.writer is not None:
            self.writer.close()
