"""Federated-learning building blocks: flat vectors, local training, aggregation, clustering."""

from .aggregate import group_means, server_step, weighted_mean
from .client import Update, local_train
from .clustering import METHODS, ClusterMethod, Grouping, RoundView, build_method, match_clusters
from .evaluate import EvalStats, evaluate, evaluate_clients
from .flat import FlatModel
from .sampling import sample_clients
from .server import RoundUpdates, Server, StepInfo

__all__ = [
    "METHODS",
    "ClusterMethod",
    "RoundUpdates",
    "Server",
    "EvalStats",
    "FlatModel",
    "Grouping",
    "RoundView",
    "StepInfo",
    "Update",
    "build_method",
    "evaluate",
    "evaluate_clients",
    "group_means",
    "local_train",
    "match_clusters",
    "sample_clients",
    "server_step",
    "weighted_mean",
]
