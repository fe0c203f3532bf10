"""Seeded random-projection sketches of long vectors, computed in chunks.

Johnson-Lindenstrauss (Achlioptas, "Database-friendly random projections", 2003):
``x @ R`` with ``R[i, j] ~ N(0, 1/s)`` keeps distances and angles between vectors
within a small factor with high probability, for ``s`` in the hundreds. ``R`` is
never held whole: its rows are drawn chunk by chunk from a generator keyed by
``(seed, chunk)``, so sketching a vector of ``D`` entries needs ``chunk * s`` floats
of scratch memory, and any vector, sketched alone or in a batch, on any device,
meets the same ``R``.
"""

from __future__ import annotations

import torch

from ...rng import SKETCH, torch_gen

__all__ = ["sketch"]

DEFAULT_CHUNK = 1 << 14  # rows of R per chunk: 16,384 x 256 floats = 16 MiB


def sketch(x: torch.Tensor, dim: int, seed: int, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """The ``dim``-dimensional sketch of ``x`` (``[D]`` or ``[m, D]``), as float32 on
    ``x``'s device."""
    if dim < 1 or chunk < 1:
        raise ValueError(f"sketch needs dim >= 1 and chunk >= 1, got {dim}, {chunk}")
    rows = x.reshape(-1, x.shape[-1])
    out = torch.zeros(rows.shape[0], dim, dtype=torch.float32, device=x.device)
    scale = dim ** -0.5
    for i, start in enumerate(range(0, rows.shape[1], chunk)):
        piece = rows[:, start:start + chunk].float()
        gen = torch_gen(seed, SKETCH, i)
        proj = torch.randn(piece.shape[1], dim, generator=gen).to(x.device)
        out.addmm_(piece, proj, alpha=scale)
    return out.reshape(*x.shape[:-1], dim)
