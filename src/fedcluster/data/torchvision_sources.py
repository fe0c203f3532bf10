"""MNIST and CIFAR-10 in torchvision's on-disk layouts, loaded once as uint8 tensors.

``data/mnist/MNIST/raw/*-ubyte`` and ``data/cifar-10/cifar-10-batches-py/*`` (under
``data.root``) are exactly where torchvision's ``MNIST("data/mnist")`` and
``CIFAR10("data/cifar-10")`` put them, which is also where the reference program kept
them. Downloads go through those torchvision classes (their checksums included)
under a file lock. The CIFAR-10 batches are Python pickles: they are read with an
unpickler that only admits the numpy array types, never arbitrary objects.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib
import io
import logging
import pickle
import pickletools
import shutil
import urllib.error
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from ..config import DataConfig
from .augment import Augmentation
from .files import DataError, expected_files, require_files, run_once
from .sources import ArrayDataset

__all__ = ["cifar10", "cifar10_files", "mnist", "mnist_files"]

log = logging.getLogger(__name__)

MNIST_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_DIR = "cifar-10-batches-py"  # torchvision's CIFAR10.base_folder


def _download(name: str, by_hand: str, fetch: Callable[[], object]) -> None:
    """Run torchvision's download ``fetch``; a failure (no network, a mirror down) is one
    DataError saying what to fetch where by hand, not torchvision's traceback. What
    torchvision prints while trying its mirrors goes to the debug log."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            fetch()
    except (OSError, urllib.error.URLError, RuntimeError) as e:
        log.debug("torchvision while downloading %s:\n%s", name, printed.getvalue())
        # MNIST reports each mirror's error over several lines: the last one, on one line
        reason = " ".join(str(getattr(e, "reason", None) or e).split()).rpartition("got: ")[2]
        raise DataError(f"dataset {name!r}: data.download = true but the download failed "
                        f"({reason}); without network, {by_hand}") from None
    log.debug("torchvision while downloading %s:\n%s", name, printed.getvalue())


def _tv() -> ModuleType:
    """``torchvision.datasets``, imported on first use (it takes over a second)."""
    from torchvision import datasets

    return datasets


def mnist_root(cfg: DataConfig) -> Path:
    return Path(cfg.root) / "mnist"


def mnist_files(cfg: DataConfig) -> list[Path]:
    raw = mnist_root(cfg) / "MNIST" / "raw"
    return [raw / n for n in MNIST_NAMES]


def _extract_gz(files: list[Path]) -> None:
    """Files given only as ``.gz`` (as the mirrors serve them) are extracted beside it."""
    for f in files:
        gz = f.with_name(f.name + ".gz")
        if not f.exists() and gz.exists():
            log.info("extracting %s", gz)
            tmp = f.with_name(f.name + ".part")
            with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(f)


def _read_mnist(root: Path, train: bool, files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        ds = _tv().MNIST(str(root), train=train, download=False)
        x, y = ds.data, ds.targets
    except (AssertionError, KeyError, ValueError, TypeError, RuntimeError, IndexError) as e:
        raise DataError(
            f"dataset 'mnist': {' / '.join(str(f) for f in files)} could not be read as "
            f"MNIST IDX files ({type(e).__name__}: {e}); they are corrupt or truncated. "
            "Delete them and copy them again, or set data.download = true"
        ) from e
    if len(x) != len(y) or x.shape[1:] != (28, 28) or (len(y) and int(y.max()) > 9):
        raise DataError(f"dataset 'mnist': {files[0]} holds {tuple(x.shape)} images and "
                        f"{files[1]} {len(y)} labels; expected [N, 28, 28] images, N labels 0-9")
    return x.unsqueeze(1).contiguous(), y.long()


@expected_files(mnist_files)
def mnist(cfg: DataConfig) -> ArrayDataset:
    """MNIST: 60,000 + 10,000 handwritten digits, 1x28x28 (rotation ±15°, crop 28 pad 2)."""
    root, files = mnist_root(cfg), mnist_files(cfg)
    present = lambda: all(f.exists() for f in files)  # noqa: E731
    if any(f.with_name(f.name + ".gz").exists() for f in files):
        run_once(root, present, lambda: _extract_gz(files))
    by_hand = (f"copy the four files from {_tv().MNIST.mirrors[0]} (.gz is fine: they are "
               f"extracted) into {files[0].parent}/")
    if cfg.download:
        run_once(root, present, lambda: _download("mnist", by_hand, lambda: (
            _tv().MNIST(str(root), train=True, download=True),
            _tv().MNIST(str(root), train=False, download=True))))
    require_files("mnist", files, f"Set data.download = true (needs network), or {by_hand}")
    train_x, train_y = _read_mnist(root, True, files[:2])
    test_x, test_y = _read_mnist(root, False, files[2:])
    return ArrayDataset(train_x, train_y, test_x, test_y, 10, (0.1307,), (0.3081,),
                        augmentation=Augmentation(rotation=15.0, crop_padding=2))


def cifar_root(cfg: DataConfig) -> Path:
    return Path(cfg.root) / "cifar-10"


def cifar10_files(cfg: DataConfig) -> list[Path]:
    base = cifar_root(cfg) / CIFAR_DIR
    return [base / name for name, _ in _tv().CIFAR10.train_list + _tv().CIFAR10.test_list]


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> object:
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in (
                "_reconstruct", "scalar"):
            core = "numpy._core.multiarray" if hasattr(np, "_core") else "numpy.core.multiarray"
            return getattr(importlib.import_module(core), name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "_codecs" and name == "encode":
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        raw = path.read_bytes()
        # every length field is checked against the bytes there are before the unpickler
        # allocates it (a corrupt one of 2^40 would be a MemoryError there)
        for _ in pickletools.genops(io.BytesIO(raw)):
            pass
        entry = _ArraysOnly(io.BytesIO(raw), encoding="latin1").load()
        data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry["labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, IndexError,
            AttributeError, MemoryError, OverflowError) as e:
        raise DataError(f"dataset 'cifar10': {path} is not a CIFAR-10 python batch "
                        f"({type(e).__name__}: {e}); it is corrupt or truncated. Delete "
                        f"{path.parent} and extract cifar-10-python.tar.gz again") from e
    if len(data) != len(labels) or (len(labels) and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(f"dataset 'cifar10': {path} holds {len(data)} images and "
                        f"{len(labels)} labels; expected equal counts and labels 0-9")
    return data, labels


def _verify(files: list[Path]) -> None:
    from torchvision.datasets.utils import check_integrity

    sums = dict(_tv().CIFAR10.train_list + _tv().CIFAR10.test_list)
    bad = [f for f in files if not check_integrity(str(f), sums[f.name])]
    if bad:
        raise DataError(
            "dataset 'cifar10': checksum mismatch (not the official CIFAR-10 files, or "
            "corrupt): " + ", ".join(str(f) for f in bad) + ". Extract "
            f"{_tv().CIFAR10.filename} again, or set data.verify = false for your own batches")


@expected_files(cifar10_files)
def cifar10(cfg: DataConfig) -> ArrayDataset:
    """CIFAR-10: 50,000 + 10,000 colour images, 3x32x32 (crop 32 pad 4, horizontal flip)."""
    root, files = cifar_root(cfg), cifar10_files(cfg)
    by_hand = (f"download {_tv().CIFAR10.url} and extract it in {root}/ (it creates "
               f"{CIFAR_DIR}/).")
    if cfg.download:
        run_once(root, lambda: all(f.exists() for f in files),
                 lambda: _download("cifar10", by_hand,
                                   lambda: _tv().CIFAR10(str(root), train=True, download=True)))
    require_files("cifar10", files, f"Set data.download = true (needs network), or {by_hand}")
    if cfg.verify:
        _verify(files)
    n_train = len(_tv().CIFAR10.train_list)
    train = [_read_batch(f) for f in files[:n_train]]
    test = [_read_batch(f) for f in files[n_train:]]

    def stack(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(np.concatenate([p[0] for p in parts])),
                torch.from_numpy(np.concatenate([p[1] for p in parts])))

    train_x, train_y = stack(train)
    test_x, test_y = stack(test)
    return ArrayDataset(train_x, train_y, test_x, test_y, 10, (0.4914, 0.4822, 0.4465),
                        (0.2023, 0.1994, 0.2010),
                        augmentation=Augmentation(crop_padding=4, hflip=True))
