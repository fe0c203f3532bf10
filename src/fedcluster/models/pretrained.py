"""Starting weights from a local file (or torchvision's stock ImageNet weights).

Tensors are matched to the model by name and shape; what does not match (a
classifier for 1000 classes, a stem adapted to small images) keeps its fresh
initialisation and is reported. A file whose names match nothing but whose
tensor shapes line up one-to-one with the model's (e.g. the reference program's
saved models, which name their layers differently) is loaded in order.
Files are read as safetensors or with ``torch.load(weights_only=True)``: never
arbitrary pickles.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..config import ConfigError

__all__ = ["LoadReport", "load_matching", "load_pretrained", "read_weights"]

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What :func:`load_matching` did."""

    loaded: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    by_position: bool = False


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A name -> tensor mapping from a safetensors file or a ``torch.save``-d state dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model.pretrained = {str(path)!r}: file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any reader failure means the same to the user
        raise ConfigError(f"model.pretrained = {str(path)!r}: cannot read weights "
                          f"({type(e).__name__}: {e}); expected a safetensors file or a "
                          "state_dict saved with torch.save") from e
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"model.pretrained = {str(path)!r}: expected a mapping of names to "
                          "tensors (a state_dict)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_matching(module: nn.Module, tensors: dict[str, torch.Tensor]) -> LoadReport:
    """Copy every tensor of ``tensors`` whose name and shape match into ``module``."""
    own = module.state_dict()
    report = LoadReport()
    matched = {}
    for name, t in tensors.items():
        if name not in own:
            report.unexpected.append(name)
        elif own[name].shape != t.shape:
            report.mismatched.append((name, tuple(t.shape), tuple(own[name].shape)))
        else:
            matched[name] = t
    if not matched and [t.shape for t in tensors.values()] == [t.shape for t in own.values()]:
        matched = dict(zip(own, tensors.values(), strict=True))
        report = LoadReport(by_position=True)
    report.loaded = list(matched)
    report.missing = [n for n in own if n not in matched and not report.by_position
                      and n not in {m[0] for m in report.mismatched}]
    with torch.no_grad():
        for name, t in matched.items():
            own[name].copy_(t.to(own[name].dtype))
    return report


def _describe(report: LoadReport, source: str) -> None:
    how = " by position (names differ, shapes match one-to-one)" if report.by_position else ""
    log.info("model.pretrained: loaded %d tensors from %s%s", len(report.loaded), source, how)
    if report.mismatched:
        shown = ", ".join(f"{n} {tuple(a)} vs model {tuple(b)}" for n, a, b in
                          report.mismatched[:8])
        log.warning("model.pretrained: %d tensors of %s have other shapes and were skipped "
                    "(freshly initialised): %s%s", len(report.mismatched), source, shown,
                    " ..." if len(report.mismatched) > 8 else "")
    for what, names in (("not in the file", report.missing),
                        ("in the file but not in the model", report.unexpected)):
        if names:
            log.warning("model.pretrained: %d tensors %s: %s%s", len(names), what,
                        ", ".join(names[:8]), " ..." if len(names) > 8 else "")


def _stock_weights(name: str) -> dict[str, torch.Tensor]:
    from torchvision.models import get_model_weights

    try:
        weights = get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise ConfigError(f"model.pretrained = true: model {name!r} has no stock weights; "
                          "give a file: model.pretrained = \"path/to/weights\"") from None
    try:
        return weights.get_state_dict(progress=False)
    except Exception as e:  # noqa: BLE001 - no network, proxy, disk: all mean the same
        raise ConfigError(
            f"model.pretrained = true: torchvision's {name} weights are not in the local cache "
            f"and could not be downloaded ({type(e).__name__}: {e}). Download {weights.url} "
            "on a machine with network and set model.pretrained = \"path/to/that/file\""
        ) from e


def load_pretrained(module: nn.Module, name: str, pretrained: bool | str) -> LoadReport | None:
    """Apply ``model.pretrained`` to a freshly built ``module`` (model ``name``)."""
    if pretrained is False:
        return None
    source = f"torchvision's {name} weights" if pretrained is True else str(pretrained)
    tensors = _stock_weights(name) if pretrained is True else read_weights(pretrained)
    report = load_matching(module, tensors)
    if not report.loaded:
        raise ConfigError(f"model.pretrained: none of the {len(tensors)} tensors in {source} "
                          f"fit model {name!r} (names and shapes differ)")
    _describe(report, source)
    return report
