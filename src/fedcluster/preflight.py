"""Checks that need torch, made before any work: the device exists, and the model, the
data and the engine fit together (``fedcluster validate --build``).

A config that loads can still fail at the first step of a run: ``run.device = "cuda"``
on a machine without CUDA, a model whose input is too small for the data's samples
(the reference's cat-and-dog network on 28x28 MNIST), the vmap engine with BatchNorm or
augmentation. These checks make the same objects a run makes first (the device, the
dataset, the model, one forward pass on two real samples, the engine's choice) and turn
what fails into a :class:`~fedcluster.config.ConfigError` naming the keys involved.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import Config, ConfigError

__all__ = ["Preflight", "check_device", "preflight"]


def check_device(name: str) -> None:
    """Refuse a ``run.device`` naming CUDA (or a CUDA device) this machine does not have."""
    if not name.startswith("cuda"):
        return
    if not torch.cuda.is_available():
        build = "a CPU-only build of torch" if torch.version.cuda is None else (
            f"torch built for CUDA {torch.version.cuda}, but no usable GPU or driver")
        raise ConfigError(f"run.device = {name!r} but CUDA is not available on this machine "
                          f"({build}); use run.device = \"cpu\" or \"auto\"")
    index = name.partition(":")[2]
    if index and int(index) >= torch.cuda.device_count():
        raise ConfigError(f"run.device = {name!r} but this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s)")


@dataclass(frozen=True)
class Preflight:
    """What the checks found: the device, the data's sample shape and classes, the model's
    size and the engine a run would use."""

    device: str
    input_shape: tuple[int, ...]
    num_classes: int
    parameters: int
    engine: str


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def preflight(cfg: Config) -> Preflight:
    """Build what a run builds first, on two real samples; raise ConfigError on a misfit.

    Loads the dataset (so missing files are reported as a run would report them), builds
    the model on the run's device and runs one forward pass in evaluation mode.
    """
    from .build import resolve_device
    from .data import load_dataset
    from .data.augment import build_augment
    from .engines.tuning import choose_engine, use_blocked_eval, use_channels_last
    from .fl.flat import FlatModel
    from .models import build_model
    from .models.spec import ModelSpec

    check_device(cfg.run.device)
    device = resolve_device(cfg.run.device)
    dataset = load_dataset(cfg.data)
    shape, classes = tuple(dataset.input_shape), dataset.num_classes
    what = (f"model.name = {cfg.model.name!r} on data.dataset = {cfg.data.dataset!r} "
            f"(samples of shape {list(shape)}, {classes} classes)")
    try:
        module = build_model(ModelSpec(shape, classes), cfg.model, cfg.seed).to(device)
        module.eval()
        with torch.no_grad():
            out = module(dataset.normalized(dataset.train_x[:2].to(device)))
    except ConfigError:
        raise
    except (RuntimeError, ValueError, TypeError) as e:
        raise ConfigError(f"{what}: the model cannot take these samples ({_first_line(e)}); "
                          "choose a model made for this data") from None
    rows = min(2, len(dataset.train_x))
    if tuple(out.shape) != (rows, classes):
        raise ConfigError(f"{what}: the model's output has shape {list(out.shape)}, expected "
                          f"{[rows, classes]} (one score per class)")
    model = FlatModel(module, use_channels_last(cfg.run.memory_format, module, device))
    engine = "pooled"
    try:
        use_blocked_eval(cfg.run.eval_layout, cfg.model.name, module, device)
        if cfg.mode == "federated":
            augment = build_augment(dataset.augmentation, dataset.mean, dataset.std,
                                    cfg.data.augment)
            engine = choose_engine(cfg, model, device, augment is not None)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return Preflight(str(device), shape, classes, model.numel, engine)
