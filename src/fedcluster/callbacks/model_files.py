"""Saves each cluster's final model as ``models/cluster-<i>.safetensors``.

Saved also when the run fails, so the last good models are never lost.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file

from ..records import RunSummary
from .base import Callback

__all__ = ["ModelSaver"]


class ModelSaver(Callback):
    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir) / "models"

    def on_run_end(self, summary: RunSummary) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        model = summary.context.model
        final = summary.final
        for i, vector in enumerate(summary.models):
            meta = {
                "cluster": str(i),
                "model": summary.context.config.model.name,
                "round": str(final.round if final else 0),
                "members": ",".join(str(m) for m in final.clusters[i].members) if final else "",
            }
            save_file(model.state_dict(vector.cpu()), str(self.dir / f"cluster-{i}.safetensors"),
                      metadata=meta)
