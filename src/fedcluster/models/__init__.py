"""Model registry. A builder takes a :class:`ModelSpec` and the ``ModelConfig``.

A builder for one kind of input (images ``(C, H, W)``) raises ValueError for samples of
another shape, which :func:`build_model` turns into a config error.

Register your own with ``@MODELS.register("name")`` in a plugin file
(``fedcluster run cfg.toml --plugin my_models.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..config import ConfigError, ModelConfig
from ..registry import Registry
from . import reference
from .pretrained import load_pretrained
from .spec import ModelSpec
from .vision import VISION_MODELS

__all__ = ["MODELS", "ModelSpec", "build_model"]

MODELS: Registry[Callable[[ModelSpec, ModelConfig], nn.Module]] = Registry("model")

@MODELS.register("digits-cnn")
def digits_cnn(spec: ModelSpec, cfg: ModelConfig) -> nn.Module:
    """A small CNN for 8x8 inputs: two 3x3 convolutions, one pooling, two dense layers."""
    c, h, w = spec.input_shape
    return nn.Sequential(
        nn.Conv2d(c, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),  # = ReLU, pool
        nn.Flatten(),
        nn.Linear(32 * (h // 2) * (w // 2), 64), nn.ReLU(),
        nn.Linear(64, spec.num_classes),
    )


@MODELS.register("mlp")
def mlp(spec: ModelSpec, cfg: ModelConfig) -> nn.Module:
    """A multilayer perceptron on the flattened input (any shape), hidden sizes from
    ``model.hidden`` (``[]``: a linear model). IFCA's MNIST model is ``hidden = [200]``."""
    sizes = [math.prod(spec.input_shape), *cfg.hidden]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(sizes, sizes[1:], strict=False):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], spec.num_classes))
    return nn.Sequential(*layers)


MODELS.register("simple-cnn")(reference.simple_cnn)
MODELS.register("mnist-cnn")(reference.mnist_cnn)
MODELS.register("cat-and-dog-conv-net")(reference.cat_and_dog_conv_net)
for _name, _builder in VISION_MODELS.items():
    MODELS.register(_name)(_builder)


def build_model(spec: ModelSpec, cfg: ModelConfig, seed: int) -> nn.Module:
    """Build ``cfg.name`` with its initial weights drawn from ``seed`` (global RNG untouched),
    then load ``cfg.pretrained`` weights when given."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            module = MODELS.get(cfg.name)(spec, cfg)
        except ValueError as e:  # the builder's refusal, e.g. an input too small for it
            raise ConfigError(f"model.name = {cfg.name!r} cannot take samples of shape "
                              f"{list(spec.input_shape)} ({e}); choose a model made for this "
                              "data") from None
    load_pretrained(module, cfg.name, cfg.pretrained)
    return module
