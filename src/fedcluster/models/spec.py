"""What a model must fit: the input shape and the number of classes."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """What a model must fit: the shape of one sample and the number of classes.

    ``input_shape`` is any shape: ``(C, H, W)`` for images, ``(C, L)`` for 1-D signals,
    ``(F,)`` for tabular rows. A builder made for one kind raises ValueError for the
    others (``c, h, w = spec.input_shape`` does), which the run reports as a config error
    naming the model and the shape."""

    input_shape: tuple[int, ...]
    num_classes: int
