"""Datasets as tensors, partitions of them over clients, and the federation they form."""

from .augment import Augmentation, build_augment
from .federation import Federation, build_federation, grouped_federation
from .files import DataError, expected_files
from .folders import dog_and_cat, image_folder
from .partition import PARTITIONS, dirichlet, eval_split, iid, shards
from .shift import SHIFTS, GroupInfo
from .sources import DATASETS, ArrayDataset, load_dataset
from .tensor_files import tensor_files
from .torchvision_sources import cifar10, mnist

DATASETS.register("mnist")(mnist)
DATASETS.register("cifar10")(cifar10)
DATASETS.register("cifar")(cifar10)  # the reference's name for CIFAR-10
DATASETS.register("dog-and-cat")(dog_and_cat)
DATASETS.register("image-folder")(image_folder)
DATASETS.register("tensors")(tensor_files)

__all__ = [
    "DATASETS",
    "PARTITIONS",
    "SHIFTS",
    "ArrayDataset",
    "Augmentation",
    "DataError",
    "Federation",
    "GroupInfo",
    "build_augment",
    "build_federation",
    "dirichlet",
    "eval_split",
    "expected_files",
    "grouped_federation",
    "iid",
    "load_dataset",
    "shards",
    "tensor_files",
]
