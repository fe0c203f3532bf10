"""The client-state store: one flat vector per client for algorithms that keep state per
client (SCAFFOLD's control variates first; personal models and local heads later).

A store is an ``[N, D]`` tensor in ``RunState.clients`` under the algorithm's key, so a
checkpoint saves it with the rest of the state and a resumed run reads it back exactly.
Rows are read for the round's clients (:func:`rows`) and written back in place
(:func:`write`): a round touches only its clients' rows, never copies the whole store.
Past ``MMAP_BYTES`` a store lives in a memory-mapped file (``torch.from_file``), so
1,000 clients x a 1M-parameter model (4 GB of float32) takes page cache, not 1,000
model copies of process memory; below it, an ordinary zero tensor. Whole stores are
only ever copied :data:`CHUNK_BYTES` at a time (:func:`chunks`): a checkpoint streams
each store to its own file and a resume streams it back into a new store
(checkpoint_store.py), so neither holds a memory-mapped store in process memory.

Under ``--nproc`` each client has a home rank (``split_by_load`` of the training-set
sizes, fixed for the run: dist/engine.py) that trains and evaluates it, and a store holds
only the rows of the clients ``held`` at home: ``[len(held), D]``, row ``j`` being client
``held[j]``. :func:`rows` and :func:`write` take client ids and refuse a client held
elsewhere; :func:`here` tells which clients are. One process holds every client
(``held = None``: row ``c`` is client ``c``). A checkpoint gathers the rows into the one
``[N, D]`` store (loop.py; memory-mapped past the threshold too), so a run resumes on
any number of processes; a resumed rank keeps its clients' rows (:func:`keep_held`).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .state import RunState

__all__ = ["CHUNK_BYTES", "MMAP_BYTES", "chunks", "client_store", "here", "keep_held",
           "new_store", "rows", "write"]

MMAP_BYTES = 1 << 30  # a store larger than this is memory-mapped
CHUNK_BYTES = 1 << 26  # whole stores are copied about this many bytes at a time


def _mapped(path: Path, shape: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """A zero ``shape`` tensor backed by a new file at ``path`` (a sparse file: the
    zeros take no disk until written)."""
    size = shape[0] * shape[1]
    with open(path, "wb") as f:
        f.truncate(size * torch.empty((), dtype=dtype).element_size())
    return torch.from_file(str(path), shared=True, size=size, dtype=dtype).view(shape)


def new_store(num_rows: int, dim: int, dtype: torch.dtype,
              device: torch.device | str = "cpu", directory: Path | None = None,
              threshold: int | None = None) -> torch.Tensor:
    """A zero ``[num_rows, dim]`` store: memory-mapped when on the CPU and larger than
    ``threshold`` bytes (default :data:`MMAP_BYTES`, read at call time), in ``directory``
    (a temporary one by default; the file is unlinked at once and lives as long as the
    tensor does); an ordinary tensor otherwise."""
    threshold = MMAP_BYTES if threshold is None else threshold
    nbytes = num_rows * dim * torch.empty((), dtype=dtype).element_size()
    if nbytes > threshold and torch.device(device).type == "cpu":
        where = Path(directory or tempfile.gettempdir())
        fd, name = tempfile.mkstemp(prefix="fedcluster-store-", suffix=".bin", dir=where)
        os.close(fd)
        try:
            return _mapped(Path(name), (num_rows, dim), dtype)
        finally:
            os.unlink(name)  # the mapping keeps the data; no file is left behind
    return torch.zeros(num_rows, dim, dtype=dtype, device=device)


def chunks(num_rows: int, row_bytes: int) -> Iterator[slice]:
    """Consecutive row ranges covering ``num_rows`` rows of ``row_bytes`` each, about
    :data:`CHUNK_BYTES` (read at call time) a range, at least one row."""
    step = max(1, CHUNK_BYTES // max(1, row_bytes))
    for a in range(0, num_rows, step):
        yield slice(a, min(a + step, num_rows))


def client_store(state: RunState, key: str, num_clients: int, dim: int,
                 like: torch.Tensor, directory: Path | None = None,
                 threshold: int | None = None, held: np.ndarray | None = None
                 ) -> tuple[RunState, torch.Tensor]:
    """The store ``key`` of ``state`` (a row of ``dim`` for each of ``num_clients``, or for
    each client ``held`` here; ``like``'s dtype and device), created as zeros when the
    state has none (:func:`new_store`); returns the state that holds it."""
    n = num_clients if held is None else len(held)
    store = state.clients.get(key)
    if store is not None:
        if store.shape != (n, dim):
            raise ValueError(f"client store {key!r} is {tuple(store.shape)}, expected "
                             f"{(n, dim)}")
        return state, store
    store = new_store(n, dim, like.dtype, like.device, directory, threshold)
    return _with(state, key, store), store


def _with(state: RunState, key: str, store: torch.Tensor) -> RunState:
    return dataclasses.replace(state, clients={**state.clients, key: store})


def here(clients: np.ndarray | list[int], held: np.ndarray | None) -> np.ndarray:
    """``[m]`` bool: which of ``clients`` have their state in this process."""
    ids = np.asarray(clients, dtype=np.int64)
    if held is None:
        return np.ones(len(ids), dtype=bool)
    if not len(held):  # a process with more ranks than clients may hold none
        return np.zeros(len(ids), dtype=bool)
    pos = np.searchsorted(held, ids)
    return (pos < len(held)) & (held[np.minimum(pos, len(held) - 1)] == ids)


def _index(store: torch.Tensor, clients: np.ndarray | list[int],
           held: np.ndarray | None) -> torch.Tensor:
    ids = np.asarray(clients, dtype=np.int64)
    if held is not None:
        ok = here(ids, held)
        if not ok.all():
            raise LookupError(f"client(s) {ids[~ok][:5].tolist()} have their state on another "
                              "process (each process holds only the clients it trains)")
        ids = np.searchsorted(held, ids)
    return torch.as_tensor(ids, device=store.device)


def rows(store: torch.Tensor, clients: np.ndarray | list[int],
         held: np.ndarray | None = None) -> torch.Tensor:
    """The rows of ``clients`` (all held here), a new ``[m, D]`` tensor."""
    return store.index_select(0, _index(store, clients, held))


def write(store: torch.Tensor, clients: np.ndarray | list[int], values: torch.Tensor,
          held: np.ndarray | None = None) -> None:
    """Set the rows of ``clients`` (all held here) to ``values`` (``[m, D]``) in place."""
    store.index_copy_(0, _index(store, clients, held), values.to(store.dtype))


def keep_held(state: RunState, held: np.ndarray | None,
              directory: Path | None = None) -> RunState:
    """``state`` with only the rows of the clients ``held`` here in each of its whole
    ``[N, D]`` stores (a checkpoint's, on one of several processes), each a new store
    (:func:`new_store`, in ``directory``) filled chunk by chunk."""
    if held is None:
        return state
    n = state.assignment.size
    index = torch.from_numpy(held)

    def mine(t: torch.Tensor) -> torch.Tensor:
        out = new_store(len(held), t.shape[1], t.dtype, t.device, directory)
        for part in chunks(len(held), t.shape[1] * t.element_size()):
            out[part] = t.index_select(0, index[part].to(t.device))
        return out

    return dataclasses.replace(state, clients={
        k: mine(t) if t.shape[0] == n else t for k, t in state.clients.items()})
