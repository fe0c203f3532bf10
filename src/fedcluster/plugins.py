"""User extensions: a Python file or module whose decorators register datasets and models.

``fedcluster run cfg.toml --plugin my_models.py`` or ``plugins = ["my_models.py",
"mypkg.fl_models"]`` in the config. A file is imported once per process, however
often it is named, so its registrations run once; registering a name that already
exists (a built-in or another plugin's) is refused with an error.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from .config import ConfigError

__all__ = ["is_path", "load_plugin", "resolve_plugin", "resolve_plugins"]

_loaded: dict[str, ModuleType] = {}


def is_path(ref: str) -> bool:
    """A plugin given as a file (``x.py``, ``dir/x.py``) rather than a module path."""
    return ref.endswith(".py") or "/" in ref or "\\" in ref


def resolve_plugin(ref: str, base: Path) -> str:
    """File plugins as absolute paths (relative ones are relative to ``base``); modules as is."""
    return str((base / ref).resolve()) if is_path(ref) else ref


def resolve_plugins(refs: Any, base: Path, extra: Sequence[str] = ()) -> Any:
    """The config's ``plugins`` (relative to ``base``) plus ``extra`` (relative to the cwd).

    Anything but a list of strings is returned unchanged for validation to reject.
    """
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        return refs
    out = [resolve_plugin(r, base) for r in refs] + [resolve_plugin(r, Path.cwd()) for r in extra]
    return list(dict.fromkeys(out))


def load_plugin(ref: str) -> ModuleType:
    """Import the plugin ``ref`` (a file path or a module path) once."""
    if ref in _loaded:
        return _loaded[ref]
    try:
        if is_path(ref):
            path = Path(ref)
            if not path.is_file():
                raise ConfigError(f"plugin {ref!r}: file not found")
            name = "fedcluster_plugin_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ConfigError(f"plugin {ref!r}: not a Python file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        else:
            module = importlib.import_module(ref)
    except ConfigError:
        raise
    except ModuleNotFoundError as e:
        raise ConfigError(f"plugin {ref!r}: {e}; give a file (my_plugin.py) or an importable "
                          "module path") from e
    except Exception as e:  # noqa: BLE001 - any error in user code is reported with its name
        raise ConfigError(f"plugin {ref!r} failed to load: {type(e).__name__}: {e}") from e
    _loaded[ref] = module
    return module
