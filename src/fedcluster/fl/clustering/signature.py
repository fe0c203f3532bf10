"""Client signatures: what each client's updates from the shared model say about it,
gathered over several rounds.

Updates made from one shared model are comparable across clients (the premise of FL+HC
and of CFL's split). A round's *signature* of a client is built from its update, one
weight matrix (a parameter of 2 or more dimensions, one row per output unit) at a time:

1. centred on the round's mean update;
2. the direction shared by the rows of every client's matrix is projected out: the top
   right singular vector of all clients' rows stacked. For a layer ``y = W h`` the
   update of row ``i`` is a sum of ``delta_i(x) h(x)`` over the client's examples, and
   ``h`` (a ReLU's output, or raw pixels) has a large mean ``h_bar`` shared by every
   example: that part, ``(sum delta_i) h_bar``, varies with how many examples of each
   label a client holds, not with its group (measured: with 14 images per client it
   hid the groups of label-permuted digits entirely, ARI 0.00);
3. each row scaled to unit norm, so that what counts is the direction of each output
   unit's update (which inputs it moved towards), not how many examples moved it (a
   class a client holds many images of would weigh more: with label skew inside the
   groups, Dirichlet 0.5, the signatures followed the label mix, ARI 0.0-0.4).

Biases and other 1-D parameters are left out (an output bias's update is the label
histogram itself). The rows of all matrices are joined (sketched, sketch.py, when
longer than ``dim``: each matrix with its own seed, the sketches summed), centred and
scaled to unit root-mean-square norm; a client's signature over several rounds from the
same model is the mean of its round signatures (the SGD noise of each round averages
out). Without a layout (``layers`` empty) the flat update is used as it is.

A clustering that waits a few rounds and groups the signatures of every client seen so
far sees far more clients than one round of partial participation holds: with half of
the clients per round, 3 rounds cover about 7/8 of them instead of 1/2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol

import numpy as np
import torch

from .sketch import sketch

__all__ = ["Layer", "accumulate", "round_signatures", "stacked", "weight_layers"]

Signatures = dict[str, list[float]]  # client id (a JSON key) -> mean signature
Counts = dict[str, int]  # client id -> rounds averaged into its signature


Layer = tuple[int, int, int]  # a weight matrix in the flat vector: (offset, rows, columns)
POWER_STEPS = 30  # power iterations for a matrix's shared row direction


class _Slot(Protocol):
    offset: int
    shape: tuple[int, ...]
    is_buffer: bool


def weight_layers(slots: Iterable[_Slot]) -> list[Layer]:
    """The weight matrices of a flat model (fl/flat.py's slots): every parameter of 2 or
    more dimensions, as ``(offset, rows, columns)`` with one row per output unit (each
    row contiguous in the vector, in either memory format)."""
    return [(s.offset, s.shape[0], math.prod(s.shape[1:])) for s in slots
            if not s.is_buffer and len(s.shape) >= 2]


def _shared_direction(rows: torch.Tensor) -> torch.Tensor:
    """The top right singular vector of ``rows`` ``[n, c]`` (power iteration from the
    longest row; deterministic)."""
    v = rows[rows.norm(dim=1).argmax()]
    for _ in range(POWER_STEPS):
        v = rows.T @ (rows @ v)
        norm = v.norm()
        if norm == 0:
            break
        v = v / norm
    return v


def _matrix_rows(block: torch.Tensor) -> torch.Tensor:
    """One weight matrix's updates ``[m, r, c]``: centred over the clients, the shared
    row direction projected out, every row scaled to unit norm (zero rows stay zero)."""
    block = block - block.mean(dim=0)
    v = _shared_direction(block.reshape(-1, block.shape[2]))
    block = block - (block @ v)[..., None] * v
    norm = block.norm(dim=2, keepdim=True)
    return torch.where(norm > 0, block / norm.clamp_min(torch.finfo(block.dtype).tiny), 0.0)


def _joined(deltas: torch.Tensor, layers: list[Layer], dim: int, seed: int) -> torch.Tensor:
    """The processed rows of every matrix of ``layers``, joined ``[m, P]``, or their
    summed per-matrix sketches ``[m, dim]`` when ``P > dim``."""
    m = deltas.shape[0]
    blocks = (deltas[:, o:o + r * c].reshape(m, r, c) for o, r, c in layers)
    if sum(r * c for _, r, c in layers) <= dim:
        return torch.cat([_matrix_rows(b).reshape(m, -1) for b in blocks], dim=1)
    return sum((sketch(_matrix_rows(b).reshape(m, -1), dim, seed + i)
                for i, b in enumerate(blocks)), torch.zeros(m, dim, device=deltas.device))


def round_signatures(deltas: torch.Tensor, dim: int, seed: int,
                     layers: list[Layer] | None = None) -> np.ndarray:
    """One round's signatures ``[m, p]`` of updates ``[m, D]`` from one model: the weight
    matrices of ``layers`` processed as above (none given: the flat update),
    centred on their mean, scaled to RMS row norm 1 (all zeros stay zeros); ``p`` is
    at most ``dim`` (sketched with ``seed`` when longer)."""
    if layers:
        x = _joined(deltas.detach(), layers, dim, seed)
    else:
        x = sketch(deltas, dim, seed) if deltas.shape[1] > dim else deltas
    x = x.detach().to("cpu", torch.float64)
    x = x - x.mean(dim=0)
    rms = x.pow(2).sum(dim=1).mean().sqrt()
    return (x / rms if rms > 0 else x).numpy()


def accumulate(signatures: Signatures, counts: Counts, clients: np.ndarray,
               rows: np.ndarray) -> tuple[Signatures, Counts]:
    """``signatures`` and ``counts`` with one round's ``rows`` of ``clients`` averaged in
    (new dicts; a client's signature is the mean of its rounds', kept to 5 significant
    digits: it lives in the checkpoint's JSON)."""
    sig, cnt = dict(signatures), dict(counts)
    for c, row in zip(clients, rows, strict=True):
        key, n = str(int(c)), cnt.get(str(int(c)), 0)
        old = np.asarray(sig[key]) if n else np.zeros_like(row)
        mean = (old * n + row) / (n + 1)
        sig[key], cnt[key] = [float(f"{v:.5g}") for v in mean], n + 1  # short in JSON
    return sig, cnt


def stacked(signatures: Signatures) -> tuple[np.ndarray, np.ndarray]:
    """``(clients [s], points [s, p])``: the signatures in client order."""
    clients = np.array(sorted(int(c) for c in signatures), dtype=np.int64)
    points = np.array([signatures[str(c)] for c in clients], dtype=np.float64)
    return clients, points.reshape(len(clients), -1)
