"""The client-state store: one flat vector per client for algorithms that keep state per
client (SCAFFOLD's control variates first; personal models and local heads later).

A store is an ``[N, D]`` tensor in ``RunState.clients`` under the algorithm's key, so a
checkpoint saves it with the rest of the state and a resumed run reads it back exactly.
Rows are read for the round's clients (:func:`rows`) and written back in place
(:func:`write`): a round touches only its clients' rows, never copies the whole store.
Past ``MMAP_BYTES`` a store lives in a memory-mapped file (``torch.from_file``), so
1,000 clients x a 1M-parameter model (4 GB of float32) takes page cache, not 1,000
model copies of process memory; below it, an ordinary zero tensor.

Under ``--nproc`` each client has a home rank (``split_by_load`` of the training-set
sizes, fixed for the run: dist/engine.py) that trains and evaluates it, and a store holds
only the rows of the clients ``held`` at home: ``[len(held), D]``, row ``j`` being client
``held[j]``. :func:`rows` and :func:`write` take client ids and refuse a client held
elsewhere; :func:`here` tells which clients are. One process holds every client
(``held = None``: row ``c`` is client ``c``). A checkpoint gathers the rows into the one
``[N, D]`` tensor (loop.py), so a run resumes on any number of processes; a resumed rank
keeps its clients' rows (:func:`keep_held`).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .state import RunState

__all__ = ["MMAP_BYTES", "client_store", "here", "keep_held", "rows", "write"]

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
                 threshold: int = MMAP_BYTES, held: np.ndarray | None = None
                 ) -> tuple[RunState, torch.Tensor]:
    """The store ``key`` of ``state`` (a row of ``dim`` for each of ``num_clients``, or for
    each client ``held`` here; ``like``'s dtype and device), created as zeros when the
    state has none; returns the state that holds it.

    A new CPU store larger than ``threshold`` bytes is memory-mapped, in ``directory``
    (a temporary one by default; the file is unlinked at once and lives as long as the
    tensor does).
    """
    n = num_clients if held is None else len(held)
    store = state.clients.get(key)
    if store is not None:
        if store.shape != (n, dim):
            raise ValueError(f"client store {key!r} is {tuple(store.shape)}, expected "
                             f"{(n, dim)}")
        return state, store
    num_clients = n
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


def keep_held(state: RunState, held: np.ndarray | None) -> RunState:
    """``state`` with only the rows of the clients ``held`` here in each of its whole
    ``[N, D]`` stores (a checkpoint's, on one of several processes)."""
    if held is None:
        return state
    n = state.assignment.size
    index = torch.from_numpy(held)
    return dataclasses.replace(state, clients={
        k: t.index_select(0, index.to(t.device)) if t.shape[0] == n else t
        for k, t in state.clients.items()})
