"""Federations with known cluster structure: each group of clients sees its own shift.

As in IFCA's rotated MNIST (Ghosh et al., "An Efficient Framework for Clustered
Federated Learning", NeurIPS 2020): group ``g`` of ``G`` sees every image rotated
by ``g * 360 / G`` degrees (``rotate``), or every label passed through a fixed
seeded permutation (``permute-labels``; group 0 keeps the identity). The functions
here are pure: images and labels in, shifted copies out.
"""

from __future__ import annotations

import numpy as np
import torch

from ..rng import SHIFT, numpy_rng

__all__ = [
    "client_groups",
    "label_permutation",
    "rotate_images",
    "shift_group",
]


def rotate_images(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Images ``[N, C, H, W]`` rotated counter-clockwise by ``degrees``.

    Multiples of 90 are exact (``torch.rot90``, square images only); other angles are
    bilinear with zero fill (torchvision), keeping the image size.
    """
    turns, rest = divmod(float(degrees), 90.0)
    if rest == 0.0:
        if x.shape[-1] != x.shape[-2] and int(turns) % 2:
            raise ValueError(f"a {degrees}° rotation needs square images, got {tuple(x.shape)}")
        return torch.rot90(x, int(turns) % 4, dims=(-2, -1)).contiguous()
    from torchvision.transforms.functional import InterpolationMode, rotate

    return rotate(x, float(degrees), interpolation=InterpolationMode.BILINEAR)


def label_permutation(num_classes: int, group: int, seed: int) -> np.ndarray:
    """The label map of ``group``: the identity for group 0, else a permutation keyed by
    ``(seed, group)``."""
    if group == 0:
        return np.arange(num_classes)
    return numpy_rng(seed, SHIFT, group).permutation(num_classes)


def shift_group(x: torch.Tensor, y: torch.Tensor, kind: str, group: int, groups: int,
                num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels as group ``group`` of ``groups`` sees them under shift ``kind``."""
    if kind == "none":
        return x, y
    if kind == "rotate":
        return rotate_images(x, group * 360.0 / groups), y
    if kind == "permute-labels":
        perm = torch.from_numpy(label_permutation(num_classes, group, seed)).to(y)
        return x, perm[y]
    raise ValueError(f"unknown shift {kind!r}; known: none, rotate, permute-labels")


def client_groups(num_clients: int, groups: int) -> np.ndarray:
    """The true group of every client: contiguous, near-equal blocks (clients 0.. in group 0)."""
    if not 1 <= groups <= num_clients:
        raise ValueError(f"cannot split {num_clients} clients into {groups} groups")
    out = np.empty(num_clients, dtype=np.int64)
    for g, block in enumerate(np.array_split(np.arange(num_clients), groups)):
        out[block] = g
    return out
