"""Seeded random-projection sketches of long vectors, computed in chunks.

A sparse random projection (CountSketch: Charikar, Chen & Farach-Colton, "Finding
frequent items in data streams", ICALP 2002; as feature hashing in Weinberger et
al., ICML 2009): coordinate ``i`` of a vector is added, with a random sign
``s_i``, to bucket ``h_i`` of ``dim`` buckets. It is the projection ``x @ R`` with
one ``±1`` per row of ``R``, so ``E[<Rx, Ry>] = <x, y>`` and distances and angles
between dense vectors such as model updates are kept within a few percent for
``dim`` in the hundreds, at O(D) cost per vector (a dense Gaussian ``R`` costs
``D x dim``). ``R`` is never held: ``h`` and ``s`` are drawn chunk by chunk from a
generator keyed by ``(seed, chunk)``, so any vector, sketched alone or in a batch,
on any device, meets the same projection.
"""

from __future__ import annotations

import torch

from ...rng import SKETCH, torch_gen

__all__ = ["sketch"]

DEFAULT_CHUNK = 1 << 20  # coordinates per chunk: 2 x 8 MiB of hashes and signs


def sketch(x: torch.Tensor, dim: int, seed: int, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """The ``dim``-dimensional sketch of ``x`` (``[D]`` or ``[m, D]``), float32 on
    ``x``'s device."""
    if dim < 1 or chunk < 1:
        raise ValueError(f"sketch needs dim >= 1 and chunk >= 1, got {dim}, {chunk}")
    rows = x.reshape(-1, x.shape[-1])
    out = torch.zeros(rows.shape[0], dim, dtype=torch.float32, device=x.device)
    for i, start in enumerate(range(0, rows.shape[1], chunk)):
        piece = rows[:, start:start + chunk].float()
        gen = torch_gen(seed, SKETCH, i)
        bucket = torch.randint(dim, (piece.shape[1],), generator=gen).to(x.device)
        sign = torch.randint(2, (piece.shape[1],), generator=gen).to(x.device) * 2.0 - 1.0
        out.index_add_(1, bucket, piece * sign)
    return out.reshape(*x.shape[:-1], dim)
