"""The points a clustering method groups: one per client update, optionally reduced.

``features = "weights"``: each client's local model minus the mean of the models the
round's clients started from. In a round where all clients start from one model
this *is* the update; once clients start from different cluster models it keeps
the cluster model's offset, so a converged cluster (whose updates have shrunk to
SGD noise) still sits apart from the others. ``features = "updates"``: the raw
update ``local - start`` (what CFL and FL+HC cluster, from a shared start).

``metric = "cosine"`` scales every row to unit length first. ``reduce``: ``pca2``
(the reference: PCA to 2-D), ``sketch`` (a seeded random projection, sketch.py),
or ``none``. ``none`` loses nothing yet is cheap: ``m`` points span at most
``m - 1`` dimensions, so they are clustered in exact principal coordinates
(from the ``m x m`` Gram matrix), which keep every pairwise distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .sketch import sketch

__all__ = ["PointSpace", "principal_coords"]


def principal_coords(x: torch.Tensor, chunk: int = 1 << 16) -> np.ndarray:
    """Coordinates ``[m, r]`` of the rows of ``x`` ``[m, D]`` on their principal axes
    (largest variance first, ``r <= m - 1``): pairwise distances are kept exactly.

    Computed from the centred Gram matrix, accumulated in float64 over column chunks
    (each centred on its own column means), so no float64 copy of ``x`` is made.
    """
    gram = torch.zeros(x.shape[0], x.shape[0], dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[1], chunk):
        piece = x[:, start:start + chunk].to(torch.float64, copy=True)  # centred in place
        piece -= piece.mean(dim=0)
        gram += piece @ piece.T
    values, vectors = torch.linalg.eigh(gram.cpu())
    values, vectors = values.flip(0), vectors.flip(1)
    keep = values > values[0].clamp_min(0) * 1e-12 if len(values) else values > 0
    if not keep.any():
        return np.zeros((x.shape[0], 1))
    return (vectors[:, keep] * values[keep].sqrt()).numpy()


@dataclass(frozen=True)
class PointSpace:
    features: str = "weights"
    reduce: str = "pca2"
    metric: str = "euclidean"
    sketch_dim: int = 256
    seed: int = 0  # keys the sketch: the same projection in every round

    def points(self, local: torch.Tensor, deltas: torch.Tensor,
               reference: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``(points [m, p], coords [m, 2])``: the clustering points and a 2-D view of them.

        ``reference`` is the mean of the clients' start models (used by ``"weights"``).
        """
        x = deltas
        if self.features == "weights":
            # Principal coordinates and sketch distances do not move when every row is
            # moved by the same vector, so only cosine needs local - reference made
            # (one [m, D] copy less); the sketch is linear: sketch(reference) is subtracted.
            x = local - reference if self.metric == "cosine" else local
        if self.metric == "cosine":
            x = torch.nn.functional.normalize(x.float(), dim=1)
        if self.reduce == "sketch":
            x = sketch(x, self.sketch_dim, self.seed)
            if self.features == "weights" and self.metric != "cosine":
                x = x - sketch(reference, self.sketch_dim, self.seed)
        coords = principal_coords(x.detach())
        coords2 = coords[:, :2]
        if self.reduce == "sketch":
            return x.detach().to("cpu", torch.float64).numpy(), coords2
        return (coords2 if self.reduce == "pca2" else coords), coords2
