"""Images where training reads them: normalised on the device, or gathered per batch.

Datasets whose normalised float copy fits in ``RESIDENT_BYTES`` (digits, MNIST,
CIFAR-10) are normalised once and kept on the training device. Larger ones (a
decoded image folder, memory-mapped) stay uint8 where they are; :class:`LazyImages`
gathers each batch, moves it to the device and normalises it there.
"""

from __future__ import annotations

import torch

from .sources import ArrayDataset

__all__ = ["RESIDENT_BYTES", "LazyImages", "device_images"]

RESIDENT_BYTES = 4 * 1024**3


class LazyImages:
    """uint8 images indexed like a tensor; ``x[idx]`` is a normalised float batch on ``device``."""

    def __init__(self, images: torch.Tensor, ds: ArrayDataset, device: torch.device) -> None:
        self.images, self.ds, self.device = images, ds, device
        self.shape = images.shape

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        batch = self.images[idx.cpu()]
        return self.ds.normalized(batch.to(self.device, non_blocking=True))


def device_images(ds: ArrayDataset, device: torch.device, resident_bytes: int = RESIDENT_BYTES
                  ) -> tuple[torch.Tensor | LazyImages, torch.Tensor | LazyImages]:
    """Train and test images for ``device``: normalised tensors, or :class:`LazyImages`."""
    floats = 4 * (ds.train_x.numel() + ds.test_x.numel())
    if floats <= resident_bytes:
        return ds.normalized(ds.train_x.to(device)), ds.normalized(ds.test_x.to(device))
    return LazyImages(ds.train_x, ds, device), LazyImages(ds.test_x, ds, device)
