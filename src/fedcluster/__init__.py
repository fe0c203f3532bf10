"""fedcluster: clustered federated learning for PyTorch.

The public names are imported on first use (PEP 562 ``__getattr__``), so importing the
package is cheap and changes nothing global: ``import fedcluster.config`` and
``fedcluster validate`` do not import torch. Start-up tricks that touch the whole
process (pausing the garbage collector while torch is imported) belong to the process
that is fedcluster's own: see :func:`fedcluster.cli.main`.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Callback",
    "Config",
    "ConfigError",
    "RoundResult",
    "RunResult",
    "RunSummary",
    "default_callbacks",
    "load_config",
    "load_models",
    "prepare",
    "run",
    "run_federation",
]
__version__ = "0.1.0"

# public name -> the module that defines it (imported when the name is first used)
_HOMES: dict[str, str] = {
    "Callback": "fedcluster.callbacks",
    "default_callbacks": "fedcluster.callbacks",
    "Config": "fedcluster.config",
    "ConfigError": "fedcluster.config",
    "load_config": "fedcluster.config",
    "RoundResult": "fedcluster.records",
    "RunSummary": "fedcluster.records",
    "prepare": "fedcluster.build",
    "run_federation": "fedcluster.loop",
    "run": "fedcluster.api",
    "RunResult": "fedcluster.api",
    "load_models": "fedcluster.api",
}


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use and kept here after."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's own names and the public ones not imported yet."""
    return sorted({*globals(), *__all__})
