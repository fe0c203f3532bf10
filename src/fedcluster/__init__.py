"""fedcluster: clustered federated learning for PyTorch."""

import gc as _gc

# Importing torch and the libraries makes a few hundred thousand objects, and with the
# cyclic garbage collector running Python walks them again and again while they are
# made (0.35 s of a 1.9 s import on a 2-core machine). So the package is imported with
# the collector paused, and what the import made, which lives as long as the process,
# is left out of the collector's sight (``gc.freeze``) before it resumes.
_collecting = _gc.isenabled()
_gc.disable()
try:
    from .callbacks import Callback, default_callbacks
    from .config import Config, ConfigError, load_config
    from .records import RoundResult, RunSummary
    from .run import prepare, run_federation
finally:
    if _collecting:
        _gc.freeze()
        _gc.enable()

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
