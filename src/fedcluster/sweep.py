"""Sweeps: ``fedcluster run CFG seed=0,1,2 cluster.k=2,3`` runs every combination.

A sweep comes from comma lists in overrides (``key=a,b,c``; commas inside ``[...]``,
``{...}`` or quotes do not split, so ``model.hidden=[200,100]`` is one value) and from a
``[sweep]`` table in the config file (``seed = [0, 1, 2]``, ``"cluster.k" = [2, 3]``),
whose keys are override keys and whose values are lists. The combinations are the
cross product of every listed key, in the order given; an override of a key the table
lists replaces the table's list. Torch-free.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import ConfigError, parse_overrides

__all__ = ["Combination", "SWEEP_FILE", "combinations", "split_values"]

#: written in a sweep's directory: the base config, the swept keys, one entry per run
SWEEP_FILE = "sweep.json"


@dataclass(frozen=True)
class Combination:
    """One run of a sweep: its directory name and the overrides that make it."""

    label: str
    overrides: list[str]
    swept: dict[str, str]  # key -> the value (as written) of each swept key


def split_values(text: str) -> list[str]:
    """``text`` split at the commas outside brackets, braces and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _table(path: str | Path | None) -> dict[str, list[str]]:
    """The config file's ``[sweep]`` table as key -> values written as override text."""
    if path is None:
        return {}
    from .config.load import _read_file

    table = _read_file(Path(path)).get("sweep")
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ConfigError(f"[sweep] in {path}: expected a table of key = [values]")
    out = {}
    for key, values in table.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.{key} = {values!r}: expected a non-empty list of values")
        out[key] = [_as_text(v) for v in values]
    return out


def _as_text(value: Any) -> str:
    """A TOML value as it would be written in an override."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _label(swept: dict[str, str]) -> str:
    text = "_".join(f"{k}={v}" for k, v in swept.items())
    return "".join(ch if ch.isalnum() or ch in "-_.=" else "-" for ch in text)


def _check_types(key: str, values: list[str]) -> None:
    """Each value fits the key's declared type (ranges are checked when each run's config
    is loaded, with the rest of its values)."""
    from .config.load import _NO, _coerce, _field_type, _type_name

    for path, value in parse_overrides([f"{key}={v}" for v in values]):
        tp = _field_type(path)
        if _coerce(value, tp) is _NO:
            raise ConfigError(f"{key} = {value!r}: expected {_type_name(tp)}")


def combinations(path: str | Path | None, overrides: list[str]) -> list[Combination]:
    """Every run a sweep makes (one, unswept, when nothing is listed). Each value is
    checked against its key's type here, before any run starts."""
    lists: dict[str, list[str]] = dict(_table(path))
    fixed = []
    for item in overrides:
        key, sep, text = item.partition("=")
        values = split_values(text) if sep else [text]
        if len(values) > 1:
            lists[key.strip()] = values
        else:
            lists.pop(key.strip(), None)
            fixed.append(item)
    for key, values in lists.items():
        if len(set(values)) != len(values):
            raise ConfigError(f"sweep over {key}: a value is listed twice ({', '.join(values)})")
        _check_types(key, values)
    if not lists:
        return [Combination("", list(fixed), {})]
    keys = list(lists)
    out = []
    for values in itertools.product(*(lists[k] for k in keys)):
        swept = dict(zip(keys, values, strict=True))
        out.append(Combination(_label(swept), [*fixed, *(f"{k}={v}" for k, v in swept.items())],
                               swept))
    return out
