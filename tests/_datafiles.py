"""Tiny dataset files in the real on-disk formats, for the loader tests."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def _idx(array: np.ndarray) -> bytes:
    """An IDX file: magic (0, 0, type 0x08 = uint8, ndim), big-endian sizes, then the data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(root: Path, n_train: int = 60, n_test: int = 20, gz: bool = False,
                seed: int = 0) -> dict[str, np.ndarray]:
    """``root/mnist/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for name, arr in arrays.items():
        data = _idx(arr)
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (raw / name).write_bytes(data)
    return arrays


def write_cifar(root: Path, per_batch: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """``root/cifar-10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "cifar-10" / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        with open(base / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": labels,
                         "filenames": [f"{i}.png" for i in range(per_batch)]}, f, protocol=2)
        out[name] = data
        out[name + "_labels"] = np.array(labels)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f, protocol=2)
    return out


def write_jpeg_folder(folder: Path, classes: tuple[str, ...] = ("cat", "dog"), n_train: int = 4,
                      n_val: int = 2, size: tuple[int, int] = (40, 30), seed: int = 0) -> None:
    """``folder/{train,val}/<class>/<i>.jpg``: class c is tinted towards one colour."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c, name in enumerate(classes):
            d = Path(folder) / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 100, (size[1], size[0], 3)).astype(np.uint8)
                img[..., c % 3] += 150
                Image.fromarray(img).save(d / f"{i}.jpg", quality=90)
