"""Clustering methods for clustered FL, one module each, behind a small registry.

``kmeans`` (the reference), ``hierarchical`` (FL+HC), ``ifca``, ``cfl`` and
``refine`` (one-shot KMeans, then IFCA's loss rule); plus
the pieces they share: clustering points (features, sketch), cluster matching,
and diagnostics (SSE and silhouette per k, agreement with true groups).
"""

from . import cfl, fedavg, hierarchical, ifca, kmeans, refine  # noqa: F401  (explicit registration)
from .base import (
    METHODS,
    ClusterMethod,
    Grouping,
    MethodState,
    ModelInit,
    RoundView,
    build_method,
)
from .cfl import CFL, bipartition, split_criterion
from .diagnostics import agreement, best_k, scan_k, silhouette, within_sse
from .features import PointSpace, principal_coords
from .fedavg import FedAvg
from .hierarchical import agglomerative_labels
from .ifca import IFCA, ifca_assign
from .kmeans import kmeans_labels
from .match import match_clusters
from .refine import Refine
from .signature import weight_layers
from .sketch import sketch

__all__ = [
    "CFL",
    "IFCA",
    "METHODS",
    "ClusterMethod",
    "FedAvg",
    "Grouping",
    "MethodState",
    "ModelInit",
    "PointSpace",
    "Refine",
    "RoundView",
    "agglomerative_labels",
    "agreement",
    "best_k",
    "bipartition",
    "build_method",
    "ifca_assign",
    "kmeans_labels",
    "match_clusters",
    "principal_coords",
    "scan_k",
    "silhouette",
    "sketch",
    "split_criterion",
    "weight_layers",
    "within_sse",
]
