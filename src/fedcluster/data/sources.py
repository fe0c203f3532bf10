"""Dataset sources. A source returns the whole dataset as tensors (uint8 images, int64 labels).

Register a new source with ``@DATASETS.register("name")`` on a function taking the
``DataConfig`` and returning an :class:`ArrayDataset`; decorate it with
:func:`~fedcluster.data.files.expected_files` so ``fedcluster datasets`` can tell
whether its files are present.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..config import DataConfig
from ..registry import Registry
from .augment import Augmentation

__all__ = ["DATASETS", "ArrayDataset", "load_dataset"]


@dataclass(frozen=True)
class ArrayDataset:
    """A dataset held in memory: images ``[N, C, H, W]`` and labels ``[N]`` int64.

    Images are uint8 (scaled to [0, 1] before normalising) or already float (used as
    they are, then normalised with ``mean`` and ``std``)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augmentation: Augmentation | None = None  # the training augmentation, when any

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def normalized(self, x: torch.Tensor) -> torch.Tensor:
        """Images as float32 normalised per channel (uint8 scaled to [0, 1] first).

        Float images with mean 0 and std 1 are returned as they are (no copy)."""
        if x.dtype == torch.float32 and set(self.mean) == {0.0} and set(self.std) == {1.0}:
            return x
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        return (x - mean) / std


DATASETS: Registry[Callable[[DataConfig], ArrayDataset]] = Registry("dataset")


@DATASETS.register("digits")
def digits(cfg: DataConfig) -> ArrayDataset:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes, no download).

    A fixed stratified 80/20 train/test split (independent of the run's seed, so every
    run sees the same test set).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, bunch.target, test_size=0.2, random_state=0, stratify=bunch.target
    )
    train_x = torch.from_numpy(x_tr)
    scaled = train_x.float() / 255.0
    return ArrayDataset(
        train_x=train_x,
        train_y=torch.from_numpy(y_tr).long(),
        test_x=torch.from_numpy(x_te),
        test_y=torch.from_numpy(y_te).long(),
        num_classes=10,
        mean=(float(scaled.mean()),),
        std=(float(scaled.std()),),
    )


def load_dataset(cfg: DataConfig) -> ArrayDataset:
    """Load ``cfg.dataset`` (all files checked, and downloaded if asked, before returning).

    With ``cfg.normalize = false`` inputs are only scaled to [0, 1] (mean 0, std 1 per
    channel), as in IFCA's rotated-MNIST setting.
    """
    ds = DATASETS.get(cfg.dataset)(cfg)
    if not cfg.normalize:
        channels = len(ds.mean)
        ds = dataclasses.replace(ds, mean=(0.0,) * channels, std=(1.0,) * channels)
    return ds
