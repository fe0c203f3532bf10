"""Client sampling: a pure function of (seed, round), as in fedjax's client samplers."""

from __future__ import annotations

import numpy as np

from ..rng import SAMPLING, numpy_rng

__all__ = ["sample_clients"]


def sample_clients(num_clients: int, per_round: int, seed: int, round_: int) -> np.ndarray:
    """The sorted ids of the ``per_round`` clients taking part in ``round_``."""
    if per_round >= num_clients:
        return np.arange(num_clients)
    rng = numpy_rng(seed, SAMPLING, round_)
    return np.sort(rng.choice(num_clients, size=per_round, replace=False))
