"""The config's error type and the per-section validation helper."""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A config value is missing, of the wrong type, or out of range."""


def _require(section: str, name: str, ok: bool, value: Any, expected: str) -> None:
    if not ok:
        key = f"{section}.{name}" if section else name
        raise ConfigError(f"{key} = {value!r}: expected {expected}")


class _Section:
    """Mixin giving each config section a dotted key prefix for its errors."""

    _section: ClassVar[str] = ""

    def _check(self, name: str, ok: bool, expected: str) -> None:
        _require(self._section, name, ok, getattr(self, name), expected)
