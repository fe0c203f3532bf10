"""What a model must fit: the input shape and the number of classes."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """What a model must fit: input shape ``(C, H, W)`` and the number of classes."""

    input_shape: tuple[int, int, int]
    num_classes: int
