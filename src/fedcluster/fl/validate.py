"""Which of a round's client updates the server accepts.

A client is left out of the round when its training raised (``Update.error``), its
update has the wrong size, holds a non-finite value, or its L2 norm exceeds
``server.max_update_norm`` (with ``server.clip_updates`` such an update is scaled
down to the bound and kept instead). Under Krum, multi-Krum and Bulyan a client that
took no local step (fewer samples than a batch with ``client.drop_last``) is left out
too: its zero update carries no information, yet it is the most central point of all,
so Krum would pick it every round. (The coordinate-wise rules keep it: leaving it out
would lower trimmed-mean's trim count, ``floor(trim * m)``, below the attackers'.)
The decision is a pure function of the gathered updates, so every process of a
distributed run takes the same one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import ClientConfig, ConfigError
from .client import Update

__all__ = ["TooFewUpdates", "Verdict", "check_batch_size", "check_updates", "screen"]


class TooFewUpdates(RuntimeError):
    """Fewer updates than ``server.min_clients`` passed validation, with
    ``server.on_too_few = "abort"``."""


def screen(update: Update, like: torch.Tensor) -> Update:
    """``update`` as the server can hold it: one whose delta is not a vector of
    ``like``'s size becomes a failed update (``error`` set, zero delta); one that
    failed already gets a zero delta of that size."""
    delta = update.delta
    if update.error is None and delta.dim() == 1 and delta.numel() == like.numel():
        return update
    error = update.error or (f"wrong size: {tuple(delta.shape)} values, "
                             f"expected ({like.numel()},)")
    return dataclasses.replace(update, delta=torch.zeros_like(like), error=error)


@dataclass(frozen=True)
class Verdict:
    """What validation decided for each row of a round's ``[m, D]`` updates."""

    keep: np.ndarray  # [m] bool: the rows the server aggregates
    reasons: dict[int, str] = field(default_factory=dict)  # rejected row -> why
    scale: dict[int, float] = field(default_factory=dict)  # clipped row -> its factor

    @property
    def kept(self) -> int:
        return int(self.keep.sum())


def check_updates(deltas: torch.Tensor, errors: list[str | None], max_norm: float = 0.0,
                  clip: bool = False, steps: list[int] | None = None) -> Verdict:
    """Validate each row of ``deltas`` ``[m, D]``; ``errors[j]`` is row ``j``'s training
    error or None. ``max_norm > 0`` bounds each row's L2 norm (computed in float64):
    a longer row is rejected, or with ``clip`` kept and scaled by ``max_norm / norm``.
    ``steps`` (given under the selecting rules): a row whose client took no local step
    is rejected. Reasons are checked in that order: error, non-finite, no step, norm."""
    m = deltas.shape[0]
    if len(errors) != m:
        raise ValueError(f"{len(errors)} error entries for {m} updates")
    finite = torch.isfinite(deltas).all(dim=1).cpu().numpy() if m else np.ones(0, bool)
    norms = torch.linalg.vector_norm(deltas, dim=1, dtype=torch.float64).cpu().numpy()
    keep = np.ones(m, dtype=bool)
    reasons: dict[int, str] = {}
    scale: dict[int, float] = {}
    for j in range(m):
        if errors[j] is not None:
            reasons[j] = f"error: {errors[j]}"
        elif not finite[j]:
            reasons[j] = "non-finite"
        elif steps is not None and steps[j] == 0:
            reasons[j] = "no local step (fewer samples than a batch)"
        elif max_norm > 0 and norms[j] > max_norm:
            if clip:
                scale[j] = float(max_norm / norms[j])
                continue
            reasons[j] = f"norm {norms[j]:.4g} > server.max_update_norm = {max_norm:g}"
        else:
            continue
        keep[j] = False
    return Verdict(keep, reasons, scale)


def check_batch_size(train_sizes: np.ndarray, cfg: ClientConfig) -> None:
    """Refuse (ConfigError) a ``client.batch_size`` larger than every client's training
    set: with ``client.drop_last`` no client could ever take a local step (every round
    would leave the models as they were), and without it each step would be padded to
    the batch size (the vmap engine allocates that much)."""
    largest = int(np.max(train_sizes, initial=0))
    if cfg.batch_size > largest:
        raise ConfigError(
            f"client.batch_size = {cfg.batch_size}: expected at most the largest client's "
            f"training set ({largest} samples; that size is a full-batch step for it)")
