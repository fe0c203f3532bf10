"""Saves each cluster's final model as ``models/cluster-<i>.safetensors``.

Saved also when the run fails, so the last good models are never lost. Each file is
replaced atomically; a failed write stops the run with a :class:`RunDirError` naming
the file (this callback is critical, see :mod:`.base`).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save

from ..records import RunSummary
from ..rundir import RunDirError, atomic_write
from .base import Callback

__all__ = ["ModelSaver"]


class ModelSaver(Callback):
    critical = True

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir) / "models"

    def on_run_end(self, summary: RunSummary) -> None:
        model = summary.context.model
        final = summary.final
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create {self.dir}: {e.strerror or e}") from e
        dataset = summary.context.federation.dataset
        for i, vector in enumerate(summary.models):
            meta = {
                "input_shape": json.dumps(list(dataset.input_shape)),  # for load_models
                "num_classes": str(dataset.num_classes),
                "cluster": str(i),
                "model": summary.context.config.model.name,
                "round": str(final.round if final else 0),
                "members": ",".join(str(m) for m in final.clusters[i].members) if final else "",
            }
            path = self.dir / f"cluster-{i}.safetensors"
            try:
                atomic_write(path, save(model.state_dict(vector.cpu()), metadata=meta))
            except OSError as e:
                raise RunDirError(f"cannot write {path}: {e.strerror or e}") from e
