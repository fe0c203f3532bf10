"""oneDNN's blocked layout for evaluating a plain convolutional network on CPU.

On CPU a plain convolutional network (``nn.Sequential`` containers only) can be
evaluated with its convolutional stem in oneDNN's blocked layout; whether a run does
is decided in tuning.py (``run.eval_layout``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..fl.evaluate import Forward

__all__ = ["blocked_forward", "blocked_stem", "plain_layers"]

# Layers that take and give oneDNN's blocked layout
_BLOCKED = (nn.Conv2d, nn.ReLU, nn.MaxPool2d)


def plain_layers(module: nn.Module) -> list[nn.Module] | None:
    """The layers of a network built of ``nn.Sequential`` containers only (nested ones
    flattened), in the order its forward runs them; None for any other network."""
    if type(module) is not nn.Sequential:
        return None if len(list(module.children())) else [module]
    layers: list[nn.Module] = []
    for child in module:
        inner = plain_layers(child)
        if inner is None:
            return None
        layers += inner
    return layers


def blocked_stem(module: nn.Module) -> int:
    """How many leading layers of ``module`` can run in oneDNN's blocked layout: its
    leading 2-D convolutions, ReLUs and max-poolings when it is a plain network
    (:func:`plain_layers`) starting with a convolution; 0 otherwise."""
    layers = plain_layers(module) or []
    n = 0
    while n < len(layers) and type(layers[n]) in _BLOCKED and getattr(
            layers[n], "padding_mode", "zeros") == "zeros":
        n += 1
    return n if n and type(layers[0]) is nn.Conv2d else 0


def blocked_forward(module: nn.Module) -> Forward:
    """``module``'s layers with the stem in oneDNN's blocked layout: the input converted
    once with ``Tensor.to_mkldnn``, the leading convolutions, ReLUs and max-poolings run
    on that layout, the result made dense before the first other layer. The layers are
    the model's own (no copy, no conversion of the weights), so the logits are those of
    ``module(x)`` up to float rounding."""
    stem = blocked_stem(module)
    if not stem:
        raise ValueError(f"{type(module).__name__} has no convolutional stem to run in "
                         "oneDNN's blocked layout")
    layers = plain_layers(module) or []

    def forward(x: torch.Tensor) -> torch.Tensor:
        h = x.to_mkldnn()
        for layer in layers[:stem]:
            h = layer(h)
        h = h.to_dense()
        for layer in layers[stem:]:
            h = layer(h)
        return h

    return forward
