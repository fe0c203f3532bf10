"""The client algorithm a config names, as the round's hooks (fl/algorithm.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import Config
from .algorithm import Hooks
from .feddyn import FedDyn
from .flat import FlatModel
from .personal import Ditto, Finetune, LocalParts, local_entries
from .scaffold import Scaffold

__all__ = ["CLIENT_STATE", "build_hooks"]

# the algorithms that keep state per client (a home process per client under --nproc)
CLIENT_STATE = ("scaffold", "feddyn", "ditto", "local", "fedper", "fedrep", "fedbn")


def build_hooks(cfg: Config, model: FlatModel, sizes: np.ndarray,
                directory: Path | None = None, held: np.ndarray | None = None) -> Hooks:
    """The hooks of ``cfg.algorithm`` for clients of training-set ``sizes``; memory-mapped
    client stores are made in ``directory``; this process holds the state of the clients
    ``held`` (None: all). FedAvg and FedProx have none."""
    a, n = cfg.algorithm, len(sizes)
    if a.name == "scaffold":
        return Scaffold(sizes, model.num_params, cfg.client.lr, directory, held)
    if a.name == "feddyn":
        return FedDyn(n, model.num_params, a.alpha, directory, held)
    if a.name == "ditto":
        return Ditto(n, model.num_params, a.mu, directory, held)
    if a.name == "finetune":
        return Finetune(a.finetune_epochs)
    if a.personal:  # local, fedper, fedrep, fedbn
        own = local_entries(cfg, model).to(model.flat.device)
        return LocalParts(own, n, model.num_params,
                          a.head_epochs if a.name == "fedrep" else None, directory, held)
    return Hooks()
