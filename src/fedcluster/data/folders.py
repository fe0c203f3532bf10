"""Image folders (``train/<class>/*.jpg``, ``val/<class>/*.jpg``) decoded once into a cache.

The first run scans the tree with torchvision's ``ImageFolder``, decodes every image
through a ``DataLoader`` with at most ``data.workers`` worker processes, resizes it
(train: shorter side to ``data.image_size`` then centre crop; eval: shorter side to
``image_size * 256/224`` then centre crop, the reference's resize 256 / crop 224)
and writes uint8 arrays to ``<folder>/.fedcluster-cache/``. Later runs memory-map
those arrays: no decoding, and only the gathered batches are read. The cache key
covers every file's path, size and modification time, and the image size, so a
changed tree is decoded again. Training augmentation (random resized crop, flip,
colour jitter, rotation) then runs batched on tensors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import DataConfig
from .augment import Augmentation
from .files import DataError, expected_files, locked, require_files
from .sources import ArrayDataset

if TYPE_CHECKING:
    from torchvision.datasets import ImageFolder

__all__ = ["dog_and_cat", "image_folder", "load_folder"]

log = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FOLDER_AUGMENT = Augmentation(rotation=15.0, hflip=True, resized_crop=(0.08, 1.0),
                              jitter=(0.4, 0.4, 0.4, 0.1))
CACHE_VERSION = 1


def _eval_split(folder: Path) -> Path:
    for name in ("val", "test"):
        if (folder / name).is_dir():
            return folder / name
    return folder / "val"


class _Decode(Dataset):
    """Decodes ``samples[i]`` to a uint8 ``[3, S, S]`` tensor; a bad file yields ok=False."""

    def __init__(self, samples: list[tuple[str, int]], resize: int, size: int) -> None:
        self.samples = samples
        self.size = size
        from torchvision import transforms  # imported here: it takes over a second

        self.transform = transforms.Compose([
            transforms.Resize(resize), transforms.CenterCrop(size), transforms.PILToTensor()])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool]:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(self.samples[i][0]) as img:
                return self.transform(img.convert("RGB")), True
        except (OSError, UnidentifiedImageError, ValueError):
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), False


def _scan(split: Path) -> ImageFolder:
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(split), loader=lambda p: p)
    except (FileNotFoundError, OSError) as e:
        raise DataError(f"image folder {split}: {e}. Expected {split}/<class>/<image>.jpg "
                        "with one sub-directory per class") from e


def _cache_key(folder: ImageFolder, size: int, resize: int) -> str:
    h = hashlib.sha1(f"v{CACHE_VERSION} {size} {resize}".encode())
    for path, label in folder.samples:
        st = os.stat(path)
        h.update(f"{path}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _decode_into(out: Path, folder: ImageFolder, resize: int, size: int, workers: int) -> None:
    n = len(folder.samples)
    tmp = out.with_name(out.name + ".part.npy")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, 3, size, size))
    workers = min(workers, os.cpu_count() or 1)
    loader = DataLoader(_Decode(folder.samples, resize, size), batch_size=64,
                        num_workers=workers, shuffle=False)
    bad: list[str] = []
    start = 0
    for images, ok in loader:
        arr[start:start + len(images)] = images.numpy()
        bad += [folder.samples[start + i][0] for i in np.flatnonzero(~ok.numpy())]
        start += len(images)
    arr.flush()
    del arr
    if bad:
        tmp.unlink()
        shown = "\n".join(f"  {p}" for p in bad[:10])
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DataError(f"{len(bad)} image(s) could not be decoded (corrupt or not an image):"
                        f"\n{shown}{more}\nRemove or replace them and run again.")
    tmp.replace(out)


def _cached_split(split: Path, resize: int, size: int, workers: int
                  ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    folder = _scan(split)
    cache = split.parent / ".fedcluster-cache"
    key = _cache_key(folder, size, resize)
    images = cache / f"{split.name}-{size}-{key}.npy"
    if not images.exists():
        try:
            with locked(cache):
                if not images.exists():
                    log.info("decoding %d images of %s (cached in %s)", len(folder.samples),
                             split, cache)
                    _decode_into(images, folder, resize, size, workers)
        except PermissionError as e:
            raise DataError(f"cannot write the decode cache {cache} ({e}); make the folder "
                            "writable") from e
    x = torch.from_numpy(np.load(images, mmap_mode="c"))
    y = torch.tensor([label for _, label in folder.samples], dtype=torch.int64)
    return x, y, folder.classes


def load_folder(folder: Path, cfg: DataConfig, name: str) -> ArrayDataset:
    """``folder/train`` and ``folder/val`` (or ``folder/test``) as one :class:`ArrayDataset`."""
    train_dir, eval_dir = folder / "train", _eval_split(folder)
    note = (" data.download cannot fetch it: there is no official source to download from "
            "(for dog-and-cat, arrange Kaggle's dogs-vs-cats images this way)."
            if cfg.download else "")
    require_files(name, [train_dir, eval_dir], (
        f"Expected an image tree {folder}/train/<class>/*.jpg and {folder}/val/<class>/*.jpg "
        "(one sub-directory per class, the same classes in both)." + note))
    size = cfg.image_size
    train_x, train_y, classes = _cached_split(train_dir, size, size, cfg.workers)
    test_x, test_y, eval_classes = _cached_split(eval_dir, round(size * 256 / 224), size,
                                                 cfg.workers)
    if classes != eval_classes:
        raise DataError(f"dataset {name!r}: {train_dir} has classes {classes} but {eval_dir} "
                        f"has {eval_classes}; both need the same class directories")
    (folder / ".fedcluster-cache" / "classes.json").write_text(json.dumps(classes))
    return ArrayDataset(train_x, train_y, test_x, test_y, len(classes), IMAGENET_MEAN,
                        IMAGENET_STD, augmentation=FOLDER_AUGMENT)


def dog_and_cat_files(cfg: DataConfig) -> list[Path]:
    root = Path(cfg.root) / "dog-and-cat"
    return [root / "train", _eval_split(root)]


def image_folder_files(cfg: DataConfig) -> list[Path]:
    if not cfg.folder:
        return []
    root = Path(cfg.root) / cfg.folder
    return [root / "train", _eval_split(root)]


@expected_files(dog_and_cat_files)
def dog_and_cat(cfg: DataConfig) -> ArrayDataset:
    """Dogs vs cats: ``<root>/dog-and-cat/{train,val}/<class>/*.jpg``, 3 x image_size²."""
    return load_folder(Path(cfg.root) / "dog-and-cat", cfg, "dog-and-cat")


@expected_files(image_folder_files)
def image_folder(cfg: DataConfig) -> ArrayDataset:
    """Any ``{train,val}/<class>/<image>`` tree at ``<root>/<data.folder>``."""
    if not cfg.folder:
        raise DataError("dataset 'image-folder' needs data.folder: the directory (absolute, or "
                        "relative to data.root) holding train/<class>/ and val/<class>/")
    return load_folder(Path(cfg.root) / cfg.folder, cfg, "image-folder")
