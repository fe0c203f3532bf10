"""The names of the built-in datasets, models, partitions and shifts, known without
importing torch.

Loading a config checks ``data.dataset``, ``model.name``, ``data.partition`` and
``data.shift``; the registries that hold them (:data:`fedcluster.data.DATASETS`,
:data:`fedcluster.models.MODELS`, :data:`fedcluster.data.PARTITIONS`,
:data:`fedcluster.data.SHIFTS`) import torch,
which a check such as ``fedcluster validate`` does not otherwise need. A built-in name
is accepted from these lists; any other name is looked up in the registries, where
plugins add theirs. A test keeps these lists equal to what the registries hold at
import, so the two cannot drift apart.
"""

from __future__ import annotations

__all__ = [
    "BUILTIN_DATASETS", "BUILTIN_MODELS", "BUILTIN_PARTITIONS", "BUILTIN_SHIFTS", "LOCAL",
]

BUILTIN_DATASETS: frozenset[str] = frozenset({
    "cifar",
    "cifar10",
    "digits",
    "dog-and-cat",
    "image-folder",
    "mnist",
    "tensors",
})

BUILTIN_MODELS: frozenset[str] = frozenset({
    "alexnet",
    "cat-and-dog-conv-net",
    "densenet121",
    "digits-cnn",
    "googlenet",
    "inception_v3",
    "mlp",
    "mnist-cnn",
    "resnet18",
    "resnet50",
    "simple-cnn",
    "vgg16",
    "vgg19",
})

# "local" (each site's own data) is no split of one dataset: the federation handles it,
# so it is a valid data.partition without being in the PARTITIONS registry.
LOCAL = "local"

BUILTIN_PARTITIONS: frozenset[str] = frozenset({"dirichlet", "iid", "shards"})

BUILTIN_SHIFTS: frozenset[str] = frozenset({"none", "permute-labels", "rotate"})
