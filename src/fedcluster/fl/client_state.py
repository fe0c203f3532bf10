"""The client-state store: one flat vector per client for algorithms that keep state per
client (SCAFFOLD's control variates first; personal models and local heads later).

A store is an ``[N, D]`` tensor in ``RunState.clients`` under the algorithm's key, so a
checkpoint saves it with the rest of the state and a resumed run reads it back exactly.
Rows are read for the round's clients (:func:`rows`) and written back in place
(:func:`write`): a round touches only its clients' rows, never copies the whole store.
Past ``MMAP_BYTES`` a store lives in a memory-mapped file (``torch.from_file``), so
1,000 clients x a 1M-parameter model (4 GB of float32) takes page cache, not 1,000
model copies of process memory; below it, an ordinary zero tensor.

Every process of a multi-process run holds the whole store and applies the same writes
(from the all-gathered updates), so the stores agree on every rank.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .state import RunState

__all__ = ["MMAP_BYTES", "client_store", "rows", "write"]

MMAP_BYTES = 1 << 30  # a store larger than this is memory-mapped


def _mapped(path: Path, shape: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """A zero ``shape`` tensor backed by a new file at ``path`` (a sparse file: the
    zeros take no disk until written)."""
    size = shape[0] * shape[1]
    with open(path, "wb") as f:
        f.truncate(size * torch.empty((), dtype=dtype).element_size())
    return torch.from_file(str(path), shared=True, size=size, dtype=dtype).view(shape)


def client_store(state: RunState, key: str, num_clients: int, dim: int,
                 like: torch.Tensor, directory: Path | None = None,
                 threshold: int = MMAP_BYTES) -> tuple[RunState, torch.Tensor]:
    """The store ``key`` of ``state`` (``[num_clients, dim]``, ``like``'s dtype and device),
    created as zeros when the state has none; returns the state that holds it.

    A new CPU store larger than ``threshold`` bytes is memory-mapped, in ``directory``
    (a temporary one by default; the file is unlinked at once and lives as long as the
    tensor does).
    """
    store = state.clients.get(key)
    if store is not None:
        if store.shape != (num_clients, dim):
            raise ValueError(f"client store {key!r} is {tuple(store.shape)}, expected "
                             f"{(num_clients, dim)}")
        return state, store
    nbytes = num_clients * dim * like.element_size()
    if nbytes > threshold and like.device.type == "cpu":
        where = Path(directory or tempfile.gettempdir())
        fd, name = tempfile.mkstemp(prefix=f"fedcluster-{key}-", suffix=".bin", dir=where)
        os.close(fd)
        try:
            store = _mapped(Path(name), (num_clients, dim), like.dtype)
        finally:
            os.unlink(name)  # the mapping keeps the data; no file is left behind
    else:
        store = torch.zeros(num_clients, dim, dtype=like.dtype, device=like.device)
    return _with(state, key, store), store


def _with(state: RunState, key: str, store: torch.Tensor) -> RunState:
    return dataclasses.replace(state, clients={**state.clients, key: store})


def rows(store: torch.Tensor, clients: np.ndarray | list[int]) -> torch.Tensor:
    """The rows of ``clients``, a new ``[m, D]`` tensor."""
    index = torch.as_tensor(np.asarray(clients, dtype=np.int64), device=store.device)
    return store.index_select(0, index)


def write(store: torch.Tensor, clients: np.ndarray | list[int], values: torch.Tensor) -> None:
    """Set the rows of ``clients`` to ``values`` (``[m, D]``) in place."""
    index = torch.as_tensor(np.asarray(clients, dtype=np.int64), device=store.device)
    store.index_copy_(0, index, values.to(store.dtype))
