"""Federations with known cluster structure: each group of clients sees its own shift.

As in IFCA's rotated MNIST (Ghosh et al., "An Efficient Framework for Clustered
Federated Learning", NeurIPS 2020): group ``g`` of ``G`` sees every image rotated
by ``g * 360 / G`` degrees (``rotate``), or every label passed through its own
seeded derangement (``permute-labels``: no label keeps its own value, in any group).

A shift is a function ``(x, y, group: GroupInfo) -> (x, y)``: one group's images and
labels in, the shifted copies out (the same number of samples, labels in
``[0, group.num_classes)``). :data:`SHIFTS` holds them by name (``data.shift``);
a plugin registers its own with ``@SHIFTS.register("name")``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..registry import Registry
from ..rng import SHIFT, numpy_rng

__all__ = [
    "SHIFTS",
    "GroupInfo",
    "client_groups",
    "derangements",
    "label_permutation",
    "rotate_images",
    "shift_group",
]


@dataclass(frozen=True)
class GroupInfo:
    """Which group a shift is applied for: ``group`` of ``groups``, the dataset's
    ``num_classes`` and the run's ``seed`` (key any randomness by it)."""

    group: int
    groups: int
    num_classes: int
    seed: int


Shift = Callable[[torch.Tensor, torch.Tensor, GroupInfo], tuple[torch.Tensor, torch.Tensor]]
SHIFTS: Registry[Shift] = Registry("shift")


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


def label_permutation(num_classes: int, group: int, seed: int, groups: int = 2) -> np.ndarray:
    """The label map of ``group`` of ``groups``: a derangement (``perm[y] != y`` for all y),
    and no two groups share one.

    With ``groups < num_classes`` the groups also disagree on every label
    (``perm_g[y] != perm_h[y]`` for ``g != h``): group ``g`` maps ``y`` to
    ``order[(rank(y) + offset_g) % num_classes]``, a seeded ordering ``order`` of the
    labels shifted by a nonzero offset, distinct per group, drawn from ``seed``. With more
    groups than that allows, the groups take the set of distinct derangements whose two
    closest maps agree on the fewest labels among ``MAP_SEARCH`` seeded draws (with 4
    classes and 4 groups, independent draws gave two groups the same map on 3 of 10
    seeds, and two maps that agree on 2 of the 4 labels are hard to tell apart; 4 maps
    that pairwise agree on at most 1 exist). More groups than there are derangements of
    the labels is a ``ValueError``.
    """
    if num_classes < 2:
        raise ValueError(f"label permutations need at least 2 classes, got {num_classes}")
    if not 0 <= group < groups:
        raise ValueError(f"group {group} is not one of {groups} groups")
    if groups > (maps := derangements(num_classes)):
        raise ValueError(f"{num_classes} labels have {maps} "
                         f"derangement(s), fewer than the {groups} groups: some groups "
                         "would see the same labels")
    if groups < num_classes:
        rng = numpy_rng(seed, SHIFT)
        order = rng.permutation(num_classes)
        offset = 1 + rng.permutation(num_classes - 1)[group]
        rank = np.empty(num_classes, dtype=np.int64)
        rank[order] = np.arange(num_classes)
        return order[(rank + offset) % num_classes]
    return _apart(num_classes, seed, groups)[group].copy()


MAP_SEARCH = 64  # seeded sets of label maps tried when the groups cannot disagree everywhere


@functools.lru_cache(maxsize=16)
def _apart(num_classes: int, seed: int, groups: int) -> np.ndarray:
    """``groups`` distinct derangements of ``num_classes`` labels, the first of
    ``MAP_SEARCH`` seeded sets with the fewest labels shared by its two closest maps."""
    rng = numpy_rng(seed, SHIFT)
    best, closest = np.empty(0), num_classes + 1
    for _ in range(MAP_SEARCH):
        maps: dict[tuple[int, ...], None] = {}
        while len(maps) < groups:  # a uniform permutation is a derangement w.p. ~1/e
            perm = rng.permutation(num_classes)
            if not (perm == np.arange(num_classes)).any():
                maps.setdefault(tuple(perm.tolist()))
        chosen = np.array(list(maps), dtype=np.int64)
        shared = (chosen[:, None, :] == chosen[None, :, :]).sum(axis=2)
        np.fill_diagonal(shared, 0)
        if shared.max() < closest:
            best, closest = chosen, int(shared.max())
    best.setflags(write=False)
    return best


def derangements(n: int) -> int:
    """How many permutations of ``n`` labels leave none in place."""
    count, before = 0, 1  # D(1), D(0)
    for m in range(2, n + 1):
        count, before = (m - 1) * (count + before), count
    return count if n >= 1 else 1


@SHIFTS.register("none")
def no_shift(x: torch.Tensor, y: torch.Tensor, g: GroupInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """Every group sees the data as it is."""
    return x, y


@SHIFTS.register("rotate")
def rotate_shift(x: torch.Tensor, y: torch.Tensor,
                 g: GroupInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """Group ``g`` sees its images rotated by ``g * 360 / groups`` degrees."""
    return rotate_images(x, g.group * 360.0 / g.groups), y


@SHIFTS.register("permute-labels")
def permute_labels(x: torch.Tensor, y: torch.Tensor,
                   g: GroupInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """Group ``g`` sees its labels through its derangement (:func:`label_permutation`)."""
    perm = label_permutation(g.num_classes, g.group, g.seed, g.groups)
    return x, torch.from_numpy(perm).to(y)[y]


def shift_group(x: torch.Tensor, y: torch.Tensor, kind: str, group: int, groups: int,
                num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels as group ``group`` of ``groups`` sees them under shift ``kind``
    (a name in :data:`SHIFTS`); the result is checked to keep the samples and label range."""
    if kind not in SHIFTS:
        raise ValueError(SHIFTS.unknown_message(kind))
    x2, y2 = SHIFTS.get(kind)(x, y, GroupInfo(group, groups, num_classes, seed))
    if len(x2) != len(x) or len(y2) != len(y):
        raise ValueError(f"shift {kind!r} changed the number of samples of group {group} "
                         f"({len(x)} images, {len(y)} labels -> {len(x2)}, {len(y2)})")
    if len(y2) and (int(y2.min()) < 0 or int(y2.max()) >= num_classes):
        raise ValueError(f"shift {kind!r} gave group {group} labels outside "
                         f"[0, {num_classes})")
    return x2, y2


def client_groups(num_clients: int, groups: int) -> np.ndarray:
    """The true group of every client: contiguous, near-equal blocks (clients 0.. in group 0)."""
    if not 1 <= groups <= num_clients:
        raise ValueError(f"cannot split {num_clients} clients into {groups} groups")
    out = np.empty(num_clients, dtype=np.int64)
    for g, block in enumerate(np.array_split(np.arange(num_clients), groups)):
        out[block] = g
    return out
