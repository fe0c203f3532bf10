"""Optional extras (TensorBoard, MLflow, Weights & Biases): is the package there, without
importing it (so that ``validate`` and ``--help`` stay quick)."""

from __future__ import annotations

import importlib.util
from typing import Any

from .config import ConfigError

__all__ = ["EXTRAS", "check_extras", "require_extra"]

# config section -> (package to import, pip extra)
EXTRAS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow"),
          "wandb": ("wandb", "wandb")}


def require_extra(section: str) -> None:
    """ConfigError with the install line when ``section.enabled`` needs a missing package."""
    package, extra = EXTRAS[section]
    if importlib.util.find_spec(package) is None:
        raise ConfigError(f'{section}.enabled = true needs the {package} package: pip install '
                          f'"fedcluster[{extra}]" (or pip install {package})')


def check_extras(cfg: Any) -> None:
    """Every extra the config turns on is installed (ConfigError naming the first not)."""
    for section in EXTRAS:
        if getattr(cfg, section).enabled:
            require_extra(section)
