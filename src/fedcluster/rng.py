"""Keyed randomness: every random draw is a pure function of a key.

Client sampling is keyed by ``(seed, SAMPLING, round)``, a client's batch order by
``(seed, CLIENT, round, client)``. A resumed run or a run split over many ranks
therefore follows exactly the same path as one uninterrupted process.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "ATTACK", "CLIENT", "CLUSTER", "INIT", "PARTITION", "PRIVACY", "SAMPLING", "SHIFT", "SKETCH",
    "key_seed",
    "numpy_rng", "torch_gen",
]

# Stream tags keep the draws of different purposes independent.
PARTITION, SAMPLING, CLIENT, CLUSTER, INIT = 1, 2, 3, 4, 5
SHIFT, SKETCH = 6, 7  # known-structure federations; random-projection sketches
ATTACK = 8  # simulated attackers (fl/attack.py)
PRIVACY = 9  # differential privacy's noise (fl/privacy.py)


def key_seed(*key: int) -> int:
    """A 63-bit seed derived from a tuple of non-negative integers."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def numpy_rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def torch_gen(*key: int, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(key_seed(*key))
