"""Datasets as tensors, partitions of them over clients, and the federation they form."""

from .federation import Federation, build_federation
from .partition import PARTITIONS, dirichlet, eval_split, iid, shards
from .sources import DATASETS, ArrayDataset, load_dataset

__all__ = [
    "DATASETS",
    "PARTITIONS",
    "ArrayDataset",
    "Federation",
    "build_federation",
    "dirichlet",
    "eval_split",
    "iid",
    "load_dataset",
    "shards",
]
