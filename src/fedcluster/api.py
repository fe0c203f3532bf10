"""The Python API: run a config and get its results back, load a run's models.

``fedcluster.run(config, callbacks=[...])`` trains like ``fedcluster run`` and returns a
:class:`RunResult` (the summary, every round's record, the final cluster models as ready
``nn.Module``\\ s); ``fedcluster.load_models(RUN_DIR)`` rebuilds the models a finished
run saved (``models/cluster-<i>.safetensors`` and ``config.toml``) for inference.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from .callbacks import Callback, default_callbacks
from .config import Config, ConfigError, ModelConfig, load_config
from .models import ModelSpec, build_model
from .records import RoundResult, RunSummary

__all__ = ["RunResult", "load_models", "run"]


@dataclass(frozen=True)
class RunResult:
    """What :func:`run` returns."""

    config: Config
    summary: RunSummary
    models: list[nn.Module]  # cluster i's final model, in evaluation mode, on the CPU
    run_dir: Path | None

    @property
    def rounds(self) -> list[RoundResult]:
        """Every round's record, as ``metrics.jsonl`` holds them."""
        return self.summary.rounds

    @property
    def accuracy(self) -> float | None:
        """The final accuracy over all clients' eval sets (None before a round ended)."""
        final = self.summary.final
        return None if final is None else final.accuracy


def _fresh(spec: ModelSpec, cfg: ModelConfig, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """A new ``cfg.name`` module for ``spec`` holding ``tensors`` (its parameters and float
    buffers; integer buffers such as BatchNorm's batch counts keep their start value)."""
    module = build_model(spec, dataclasses.replace(cfg, pretrained=False), seed=0)
    missing, unexpected = module.load_state_dict(tensors, strict=False)
    integer = {n for n, b in module.named_buffers() if not b.is_floating_point()}
    if unexpected or set(missing) - integer:
        raise ValueError(f"the saved tensors do not fit model {cfg.name!r}: missing "
                         f"{sorted(set(missing) - integer)}, unexpected {sorted(unexpected)}")
    return module.eval()


def run(config: Config | str | Path | None = None, callbacks: Sequence[Callback] = (), *,
        overrides: Sequence[str] = (), run_dir: str | Path | None = None,
        quiet: bool = True) -> RunResult:
    """Train ``config`` (a :class:`~fedcluster.config.Config`, a config file, or None for
    the defaults, with ``overrides``) to the end and return its results.

    ``callbacks`` are called with the standard ones. With ``run_dir`` the run writes its
    directory there as ``fedcluster run --out`` does (created, locked, refused when it
    already holds a run); without, nothing is written. ``quiet=False`` prints the
    console table and progress. Configuration errors raise ConfigError before any work.
    """
    from .loop import run_federation
    from .preflight import check_device
    from .rundir import new_run

    if isinstance(config, Config):
        if overrides:
            raise ConfigError("overrides apply to a config file; give a Config already "
                              "changed, or a path")
        cfg = config
    else:
        cfg = load_config(config, list(overrides))
    check_device(cfg.run.device)
    if run_dir is None:
        summary = run_federation(cfg, [*default_callbacks(cfg, None, quiet=quiet), *callbacks])
        held_path = None
    else:
        with new_run(run_dir, label="run_dir") as held:
            cbs = [*default_callbacks(cfg, held.path, quiet=quiet), *callbacks]
            summary = run_federation(cfg, cbs, held.path)
            held_path = held.path
    ctx = summary.context
    spec = ModelSpec(ctx.federation.dataset.input_shape, ctx.federation.dataset.num_classes)
    models = [_fresh(spec, cfg.model, ctx.model.state_dict(vector.cpu()))
              for vector in summary.models]
    return RunResult(cfg, summary, models, held_path)


def _spec(run_dir: Path, cfg: Config, first: Path) -> ModelSpec:
    """The data's sample shape and classes: from the model files (saved since this API
    exists), else from the dataset itself."""
    with safe_open(first, framework="pt") as f:
        meta = f.metadata() or {}
    if "input_shape" in meta and "num_classes" in meta:
        return ModelSpec(tuple(json.loads(meta["input_shape"])), int(meta["num_classes"]))
    from .data import load_dataset

    ds = load_dataset(cfg.data)
    return ModelSpec(ds.input_shape, ds.num_classes)


def load_models(run_dir: str | Path, device: str | torch.device = "cpu") -> list[nn.Module]:
    """The final cluster models a run saved, as ``nn.Module``\\ s in evaluation mode on
    ``device`` (cluster i at index i). They take inputs as the run fed them: float32
    ``[N, *sample shape]``, normalised with the dataset's per-channel mean and std
    (``data.normalize``)."""
    run_dir = Path(run_dir)
    files = sorted((run_dir / "models").glob("cluster-*.safetensors"),
                   key=lambda p: int(p.stem.partition("-")[2]))
    if not (run_dir / "config.toml").is_file() or not files:
        raise ConfigError(f"{run_dir}: no saved models there (expected config.toml and "
                          "models/cluster-<i>.safetensors)")
    cfg = load_config(run_dir / "config.toml")
    spec = _spec(run_dir, cfg, files[0])
    return [_fresh(spec, cfg.model, load_file(p)).to(device) for p in files]
