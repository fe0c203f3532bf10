"""A checkpoint's client stores, each streamed to and from its own ``.npy`` file.

A client-state store can be larger than memory (``[N, P]``, memory-mapped past
``fl.client_state.MMAP_BYTES``), so a checkpoint never puts one inside the safetensors
file (which is written from, and read into, memory whole). Each store goes to
``RUN_DIR/checkpoint.clients-<round>-<token>-<i>.npy``, a plain NumPy ``.npy`` file
(any tool reads it, ``numpy.load(path, mmap_mode="r")`` without loading it), written
:data:`~fedcluster.fl.client_state.CHUNK_BYTES` at a time under a temporary name,
fsynced and renamed; its name, shape, dtype and CRC-32 go into the checkpoint's
metadata, which is written after it. The name is new for every checkpoint, so a
checkpoint never pairs with another one's store; a kill between the two writes leaves an
unreferenced file, removed by the next checkpoint (:func:`remove_stale`). Reading
checks the header, the size and the CRC while copying chunk by chunk into a new store
(memory-mapped past the threshold, in the run directory, as the run's own).
"""

from __future__ import annotations

import contextlib
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .fl.client_state import chunks, new_store

__all__ = ["PATTERN", "read_store", "remove_stale", "write_store"]

PATTERN = "checkpoint.clients-*.npy"
_TEMPORARY = ".checkpoint.clients-*.tmp"  # a store being written (or cut short by a kill)


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    """The NumPy dtype of ``dtype``'s elements; raw unsigned integers of its width for a
    dtype NumPy lacks (bfloat16): the file keeps the bits, the metadata the torch dtype."""
    try:
        return torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError:
        return np.dtype(f"<u{torch.empty((), dtype=dtype).element_size()}")


def _torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


def write_store(run_dir: Path, name: str, store: torch.Tensor) -> dict[str, Any]:
    """Write ``store`` (``[N, D]``, any device) to ``run_dir/name`` chunk by chunk, durably;
    returns its entry for the checkpoint's metadata."""
    path = Path(run_dir) / name
    tmp = path.with_name(f".{name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    rows, dim = store.shape
    header = {"descr": np.lib.format.dtype_to_descr(_numpy_dtype(store.dtype)),
              "fortran_order": False, "shape": (rows, dim)}
    crc = 0
    try:
        with open(tmp, "xb") as f:
            np.lib.format.write_array_header_2_0(f, header)
            for part in chunks(rows, dim * store.element_size()):
                data = store[part].detach().cpu().contiguous().view(torch.uint8).numpy()
                crc = zlib.crc32(data, crc)
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return {"file": name, "shape": [rows, dim], "dtype": str(store.dtype).removeprefix("torch."),
            "crc32": crc}


def read_store(run_dir: Path, entry: dict[str, Any], device: torch.device | str = "cpu"
               ) -> torch.Tensor:
    """The store described by ``entry`` (from :func:`write_store`), copied chunk by chunk
    into a new store; ValueError or OSError, saying what is wrong, for a file that is
    missing, of another shape or dtype, cut short or corrupt."""
    path = Path(run_dir) / entry["file"]
    rows, dim = (int(x) for x in entry["shape"])
    dtype = _torch_dtype(entry["dtype"])
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f".npy format version {version}, expected 1.0 or 2.0")
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) \
            else np.lib.format.read_array_header_2_0
        shape, fortran, found = read(f)
        expected = _numpy_dtype(dtype)
        if tuple(shape) != (rows, dim) or fortran or found != expected:
            raise ValueError(f"holds a {'Fortran-order ' if fortran else ''}{found} array of "
                             f"shape {tuple(shape)}, the checkpoint expects {expected} of "
                             f"shape {(rows, dim)}")
        row_bytes = dim * expected.itemsize
        size = os.fstat(f.fileno()).st_size - f.tell()
        if size != rows * row_bytes:
            raise ValueError(f"holds {size} bytes of data, expected {rows * row_bytes}; it "
                             "may have been cut short")
        out = new_store(rows, dim, dtype, device, run_dir)
        crc = 0
        for part in chunks(rows, row_bytes):
            # a CPU store is read into in place; another device's through a chunk
            dest = out[part] if out.device.type == "cpu" else \
                torch.empty(part.stop - part.start, dim, dtype=dtype)
            buf = dest.view(torch.uint8).numpy().reshape(-1)
            if f.readinto(buf) != buf.size:
                raise ValueError("ended early; it may have been cut short")
            crc = zlib.crc32(buf, crc)
            if dest.device != out.device:
                out[part] = dest.to(out.device)
    if crc != int(entry["crc32"]):
        raise ValueError("its data does not match the checkpoint's checksum (CRC-32); the "
                         "file is corrupt or belongs to another checkpoint")
    return out


def remove_stale(run_dir: Path, keep: set[str]) -> None:
    """Remove the store files in ``run_dir`` not named in ``keep`` (earlier checkpoints',
    or left by a checkpoint cut short)."""
    run_dir = Path(run_dir)
    for path in [*run_dir.glob(PATTERN), *run_dir.glob(_TEMPORARY)]:
        if path.name not in keep:
            with contextlib.suppress(OSError):
                path.unlink()
