"""Client signatures: what each client's updates from the shared model say about it,
gathered over several rounds.

Updates made from one shared model are comparable across clients (the premise of FL+HC
and of CFL's split). A round's *signature* of a client is its update minus the round's
mean update, with the round's rows scaled to unit root-mean-square norm; a client's
signature over several rounds from the same model is the mean of its round signatures
(the SGD noise of each round averages out). When the updates are long (``D > dim``) they
are sketched first (sketch.py; linear, so the centring commutes with it), which keeps
the signatures small enough to live in the run state.

A clustering that waits a few rounds and groups the signatures of every client seen so
far sees far more clients than one round of partial participation holds: with half of
the clients per round, 3 rounds cover about 7/8 of them instead of 1/2.
"""

from __future__ import annotations

import numpy as np
import torch

from .sketch import sketch

__all__ = ["accumulate", "round_signatures", "stacked"]

Signatures = dict[str, list[float]]  # client id (a JSON key) -> mean signature
Counts = dict[str, int]  # client id -> rounds averaged into its signature


def round_signatures(deltas: torch.Tensor, dim: int, seed: int) -> np.ndarray:
    """One round's signatures ``[m, p]`` of updates ``[m, D]`` from one model: centred
    on their mean, scaled to RMS row norm 1 (all zeros stay zeros); ``p = min(D, dim)``
    (sketched with ``seed`` when ``D > dim``)."""
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
