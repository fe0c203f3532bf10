"""Checkpoints: a run's state after a round, written atomically, read back exactly.

``RUN_DIR/checkpoint.safetensors`` holds the state's tensors (the cluster models, the
assignment, the server optimiser's and round-function tensors) and, in its metadata,
the plain part (the round, the clustering method's and early stop's state, and the
client stores' files) as JSON: one file, replaced with ``os.replace`` after an fsync.
The client stores (``[N, P]``, possibly larger than memory) are streamed to files of
their own, named anew for each checkpoint and written before the safetensors file
names them (checkpoint_store.py), so a kill at any moment leaves the previous
checkpoint or the new one, never a mix, and neither writing nor reading a checkpoint
holds a store whole in memory. ``RUN_DIR/checkpoint.json`` repeats the plain part for
people and scripts; loading reads the safetensors file and the store files. No pickle
is involved. Checkpoints of format 1 (client stores inside the safetensors file) still
load, their stores read whole.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_bytes

from .checkpoint_store import read_store, remove_stale, write_store
from .fl.state import RunState
from .rundir import atomic_write

__all__ = ["CHECKPOINT", "CheckpointError", "load_checkpoint", "save_checkpoint"]

CHECKPOINT = "checkpoint.safetensors"
FORMAT = "fedcluster-checkpoint/2"
_OLD_FORMAT = "fedcluster-checkpoint/1"  # client stores inside the safetensors file
_GROUPS = ("server_opt", "extra")  # the state's dicts of tensors kept in the file


class CheckpointError(Exception):
    """A checkpoint that is missing, cut short, or not one of fedcluster's."""


def _plain(state: RunState, stores: dict[str, Any]) -> dict[str, Any]:
    return {"format": FORMAT, "round": state.round, "k": state.k, "method": state.method,
            "stop": state.stop, "clients": stores}


def save_checkpoint(run_dir: Path, state: RunState) -> Path:
    """Write ``state`` to ``run_dir`` atomically; returns the checkpoint's path."""
    run_dir = Path(run_dir)
    tensors = {"models": state.models.detach().cpu().contiguous(),
               "assignment": torch.from_numpy(np.ascontiguousarray(state.assignment))}
    for group in _GROUPS:
        for name, t in getattr(state, group).items():
            tensors[f"{group}/{name}"] = t.detach().cpu().contiguous()
    token = os.urandom(4).hex()
    stores = {key: write_store(run_dir, f"checkpoint.clients-{state.round}-{token}-{i}.npy", t)
              for i, (key, t) in enumerate(state.clients.items())}
    plain = _plain(state, stores)
    path = run_dir / CHECKPOINT
    atomic_write(path, save_bytes(tensors, metadata={"state": json.dumps(plain)}))
    atomic_write(path.with_suffix(".json"), json.dumps(plain, indent=1) + "\n")
    remove_stale(run_dir, {s["file"] for s in stores.values()})
    return path


def load_checkpoint(run_dir: Path, device: torch.device | str = "cpu") -> RunState:
    """The state saved in ``run_dir``; :class:`CheckpointError` (one line, naming the
    file) when it is missing, truncated or garbage."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint (the run never finished a round, or "
                              "this is not a run directory)")
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
        plain = json.loads(meta["state"])
        if plain.get("format") not in (FORMAT, _OLD_FORMAT):
            raise ValueError(f"format {plain.get('format')!r}, expected {FORMAT!r}")
        models, assignment = tensors["models"], tensors["assignment"].numpy().copy()
        if models.dim() != 2 or models.shape[0] != plain["k"]:
            raise ValueError(f"models of shape {tuple(models.shape)} for k = {plain['k']}")
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: not a readable fedcluster checkpoint "
                              f"({type(e).__name__}: {e}); it may have been cut short") from None
    groups: dict[str, dict[str, torch.Tensor]] = {g: {} for g in (*_GROUPS, "clients")}
    for name, t in tensors.items():
        group, _, key = name.partition("/")
        if group in groups:  # "clients/": a checkpoint of format 1
            groups[group][key] = t.to(device)
    for key, entry in plain.get("clients", {}).items():
        store = Path(run_dir) / str(entry.get("file"))
        try:
            groups["clients"][key] = read_store(run_dir, entry, device)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{store}: client store {key!r} of the checkpoint {path.name} "
                                  f"is unusable ({type(e).__name__}: {e})") from None
    return RunState(int(plain["round"]), models.to(device), assignment, plain["method"],
                    plain["stop"], **groups)
