"""An example plugin: a partition and a shift of one's own, registered by decorators.

``label-blocks`` gives each client a contiguous block of the samples sorted by label (the
most label-skewed split there is); ``flip-rotate`` lets group ``g`` see its images under
the ``g``-th of the square's 8 symmetries (rotations by 90°, then mirrored), so up to 8
groups each see differently oriented images. Use them with::

    fedcluster run --plugin examples/plugins/groups_plugin.py data.partition=label-blocks \\
        data.shift=flip-rotate data.groups=4 data.num_clients=8

A partition is ``(labels, num_clients, cfg, rng) -> one index array per client`` (disjoint);
a shift is ``(x, y, group) -> (x, y)`` for one group's images and labels.
"""

import numpy as np
import torch

from fedcluster.config import DataConfig
from fedcluster.data import PARTITIONS, SHIFTS, GroupInfo


@PARTITIONS.register("label-blocks")
def label_blocks(labels: np.ndarray, num_clients: int, cfg: DataConfig,
                 rng: np.random.Generator) -> list[np.ndarray]:
    """Sort by label (random order within a label) and cut into ``num_clients`` blocks."""
    order = np.lexsort((rng.random(len(labels)), labels))
    return [np.sort(block) for block in np.array_split(order, num_clients)]


@SHIFTS.register("flip-rotate")
def flip_rotate(x: torch.Tensor, y: torch.Tensor,
                group: GroupInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """Group ``g``: rotated by ``90° * (g % 4)``, mirrored left to right when ``g % 8 >= 4``."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"flip-rotate needs square images, got {tuple(x.shape[-2:])}")
    out = torch.rot90(x, group.group % 4, dims=(-2, -1))
    if group.group % 8 >= 4:
        out = out.flip(-1)
    return out.contiguous(), y
