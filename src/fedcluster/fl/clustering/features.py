"""The points a clustering method groups: one per client update, optionally reduced.

``features = "weights"``: each client's local model minus the mean of the models the
round's clients started from. In a round where all clients start from one model
this *is* the update; once clients start from different cluster models it keeps
the cluster model's offset, so a converged cluster (whose updates have shrunk to
SGD noise) still sits apart from the others. ``features = "updates"``: the raw
update ``local - start`` (what CFL and FL+HC cluster, from a shared start).

``metric = "cosine"`` scales every row to unit length first. ``reduce``: ``pca2``
(the reference: PCA to 2-D), ``sketch`` (a seeded random projection, sketch.py),
or ``none``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.decomposition import PCA

from .sketch import sketch

__all__ = ["PointSpace", "pca2"]


def pca2(points: np.ndarray, seed: int) -> np.ndarray:
    """The first two principal coordinates of ``points`` (fewer if fewer rows/columns)."""
    dims = min(2, points.shape[0], points.shape[1])
    return PCA(n_components=dims, random_state=seed % 2**32).fit_transform(points)


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
        x = local - reference if self.features == "weights" else deltas
        if self.metric == "cosine":
            x = torch.nn.functional.normalize(x.float(), dim=1)
        if self.reduce == "sketch":
            x = sketch(x, self.sketch_dim, self.seed)
        points = x.detach().to("cpu", torch.float64).numpy()
        coords = pca2(points, self.seed)
        return (coords if self.reduce == "pca2" else points), coords
