"""The names of the built-in datasets and models, known without importing torch.

Loading a config checks ``data.dataset`` and ``model.name``; the registries that hold
them (:data:`fedcluster.data.DATASETS`, :data:`fedcluster.models.MODELS`) import torch,
which a check such as ``fedcluster validate`` does not otherwise need. A built-in name
is accepted from these lists; any other name is looked up in the registries, where
plugins add theirs. A test keeps these lists equal to what the registries hold at
import, so the two cannot drift apart.
"""

from __future__ import annotations

__all__ = ["BUILTIN_DATASETS", "BUILTIN_MODELS"]

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
