"""Loading a config: files (TOML, JSON, the reference's conf.json), overrides, typing."""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import tomli_w

from .. import secrets
from ..names import BUILTIN_DATASETS, BUILTIN_MODELS, BUILTIN_PARTITIONS, BUILTIN_SHIFTS, LOCAL
from ..registry import Registry, did_you_mean
from .base import ConfigError
from .root import Config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["config_to_toml", "load_config", "parse_overrides"]


# Names people bring from the reference program and other tools, for did-you-mean hints.
_KNOWN_AS = {"lambda": "lr", "server_lr": "lr", "global_epochs": "rounds", "epochs": "rounds",
             "num_clusters": "k", "clusters": "k", "model_name": "name", "type": "dataset"}


def _unknown_key(key: str, prefix: str, names: list[str]) -> ConfigError:
    hint = did_you_mean(key, names)
    if not hint:
        alias = difflib.get_close_matches(key, list(_KNOWN_AS), n=1, cutoff=0.7)
        if alias and _KNOWN_AS[alias[0]] in names:
            hint = f" (did you mean {_KNOWN_AS[alias[0]]!r}?)"
    where = f" in [{prefix.rstrip('.')}]" if prefix else ""
    return ConfigError(f"unknown key {prefix}{key}{hint}; known keys{where}: " + ", ".join(names))


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if get_origin(tp) is list:
        return f"a list of {_type_name(get_args(tp)[0])}s"
    if get_origin(tp) is dict:
        return "a table of keys"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


_NO = object()


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp``, or ``_NO`` when it does not fit."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is dict:
        return value if isinstance(value, dict) else _NO
    if origin is Literal:
        return value if value in get_args(tp) else _NO
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            out = _coerce(value, arg)
            if out is not _NO:
                return out
        return _NO
    if origin is list:
        if not isinstance(value, list):
            return _NO
        items = [_coerce(v, get_args(tp)[0]) for v in value]
        return _NO if any(i is _NO for i in items) else items
    if tp is bool:
        return value if isinstance(value, bool) else _NO
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else _NO
    if tp is str:
        return value if isinstance(value, str) else _NO
    raise TypeError(f"unsupported config type {tp}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"[{prefix.rstrip('.')}] must be a table of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise _unknown_key(key, prefix, names)
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        tp, value = hints[name], data[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, f"{prefix}{name}.")
            continue
        out = _coerce(value, tp)
        if out is _NO:
            raise ConfigError(f"{prefix}{name} = {value!r}: expected {_type_name(tp)}")
        kwargs[name] = out
    return cls(**kwargs)


def _field_type(path: list[str]) -> Any:
    """The declared type at a dotted key path, or raise ConfigError for unknown keys."""
    cls: Any = Config
    for i, part in enumerate(path):
        if get_origin(cls) is dict:  # a free table ([data.params]): any key, any value
            return Any
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(
                f"unknown key {'.'.join(path)}: {'.'.join(path[:i])} is not a section"
            )
        names = [f.name for f in dataclasses.fields(cls)]
        if part not in names:
            raise _unknown_key(part, "".join(f"{p}." for p in path[:i]), names)
        cls = typing.get_type_hints(cls)[part]
    return cls


def parse_overrides(items: list[str]) -> list[tuple[list[str], Any]]:
    """Parse ``section.key=value`` strings; values are TOML, strings may go unquoted."""
    out = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        path = key.split(".")
        tp = _field_type(path)
        if dataclasses.is_dataclass(tp):
            raise ConfigError(f"override {item!r}: {key} is a section; set one of its keys")
        text = text.strip()
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # a bare word such as mnist or sgd
        if _coerce(value, tp) is _NO and _coerce(text, tp) is not _NO:
            value = text  # e.g. name=123 for a string field
        out.append((path, value))
    return out


def strip_json_comments(text: str) -> str:
    """``text`` with ``//`` comments (to the end of the line, outside strings) removed, as
    in the reference program's ``conf.json``. Newlines stay, so JSON errors keep their
    line numbers; a ``//`` inside a string (a URL) is part of the string."""
    out = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        ch = text[i]
        if in_string:
            if ch == "\\":
                out.append(text[i:i + 2])
                i += 2
                continue
            in_string = ch != '"'
        elif ch == '"':
            in_string = True
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text (byte "
                          f"0x{e.object[e.start]:02x} at offset {e.start}); a config is a "
                          "TOML or JSON text file saved as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {e.strerror}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(strip_json_comments(text))
        else:
            data = tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise ConfigError(f"config file {str(path)!r} is not valid {kind}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table of keys at the top")
    return data


def _datasets() -> Registry[Any]:
    from ..data import DATASETS  # imports torch

    return DATASETS


def _models() -> Registry[Any]:
    from ..models import MODELS  # imports torch

    return MODELS


def _partitions() -> Registry[Any]:
    from ..data import PARTITIONS  # imports torch

    return PARTITIONS


def _shifts() -> Registry[Any]:
    from ..data import SHIFTS  # imports torch

    return SHIFTS


def _check_registered(key: str, name: str, builtin: frozenset[str],
                      registry: Callable[[], Registry[Any]], also: tuple[str, ...] = ()) -> None:
    """``name`` is built in, or in the registry (where plugins add theirs).

    The registry, and torch with it, is imported only for a name that is not built in,
    so that checking a plain config stays quick and the error message (did-you-mean,
    known names) is the registry's own.
    """
    if name in builtin or name in also:
        return
    known = registry()
    if name in known:
        return
    if also:  # names valid beside the registry's own (data.partition = "local")
        names = sorted([*known.names(), *also])
        raise ConfigError(f"{key}: unknown {known.kind} {name!r}{did_you_mean(name, names)}; "
                          f"known: {', '.join(names)}")
    raise ConfigError(f"{key}: {known.unknown_message(name)}")


def _check_names(cfg: Config) -> None:
    """Plugins load, and names that refer to registries (datasets, models, partitions,
    shifts) exist."""
    from ..plugins import load_plugin

    for ref in cfg.plugins:
        load_plugin(ref)
    _check_registered("data.dataset", cfg.data.dataset, BUILTIN_DATASETS, _datasets)
    _check_registered("model.name", cfg.model.name, BUILTIN_MODELS, _models)
    _check_registered("data.partition", cfg.data.partition, BUILTIN_PARTITIONS, _partitions,
                      also=(LOCAL,))
    _check_registered("data.shift", cfg.data.shift, BUILTIN_SHIFTS, _shifts)
    if cfg.data.params:  # the dataset's builder takes each key (imports torch)
        from ..data.sources import check_params

        check_params(cfg.data)
    if isinstance(cfg.model.pretrained, str) and not Path(cfg.model.pretrained).is_file():
        raise ConfigError(f"model.pretrained = {cfg.model.pretrained!r}: file not found")


def load_config(path: str | Path | None = None, overrides: list[str] = (),
                environ: Mapping[str, str] | None = None, plugins: list[str] = ()) -> Config:
    """Load and validate a config; ``path=None`` starts from the built-in defaults.

    Secrets in environment variables (``environ``, default ``os.environ``; see
    :mod:`fedcluster.secrets`) win over the file and the overrides. A JSON file in the
    reference program's ``conf.json`` format is mapped first (see :mod:`fedcluster.legacy`).
    ``plugins`` (files or modules, e.g. from ``--plugin``) are added to the config's own;
    relative plugin files are relative to the config file. A ``[sweep]`` table is left
    out: this is the config its runs start from (see :mod:`fedcluster.sweep`).
    """
    from ..legacy import from_legacy, is_legacy
    from ..plugins import resolve_plugins

    data = _read_file(Path(path)) if path is not None else {}
    data.pop("sweep", None)  # the runs `fedcluster run` makes of it (fedcluster.sweep)
    if path is not None and Path(path).suffix.lower() == ".json" and is_legacy(data):
        data = from_legacy(data)
    for keys, value in parse_overrides(list(overrides)):
        node = data
        for part in keys[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {'.'.join(keys)}: {part} is not a table in the file")
        node[keys[-1]] = value
    try:
        data = secrets.apply_env(data, os.environ if environ is None else environ)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    base = Path(path).parent if path is not None else Path.cwd()
    data["plugins"] = resolve_plugins(data.get("plugins", []), base, plugins)
    cfg = _build(Config, data, "")
    _check_names(cfg)
    return cfg


def config_to_toml(cfg: Config) -> str:
    """The resolved config as TOML, secrets masked (they come back from the environment)."""
    return tomli_w.dumps(cfg.to_dict())
