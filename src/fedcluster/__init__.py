"""fedcluster: clustered federated learning for PyTorch."""

from .callbacks import Callback, default_callbacks
from .config import Config, ConfigError, load_config
from .results import RoundResult, RunSummary
from .run import prepare, run_federation

__all__ = [
    "Callback",
    "Config",
    "ConfigError",
    "RoundResult",
    "RunSummary",
    "default_callbacks",
    "load_config",
    "prepare",
    "run_federation",
]
__version__ = "0.1.0"
