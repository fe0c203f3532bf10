"""Federated-learning building blocks: flat vectors, local training, aggregation, clustering."""

from .aggregate import group_means, server_step, weighted_mean
from .client import Update, local_train
from .cluster import Clustering, kmeans_cluster, match_clusters
from .evaluate import EvalStats, evaluate
from .flat import FlatModel
from .sampling import sample_clients
from .server import ClusterServer, StepInfo

__all__ = [
    "ClusterServer",
    "Clustering",
    "EvalStats",
    "FlatModel",
    "StepInfo",
    "Update",
    "evaluate",
    "group_means",
    "kmeans_cluster",
    "local_train",
    "match_clusters",
    "sample_clients",
    "server_step",
    "weighted_mean",
]
