"""A small name registry for datasets, models and other pluggable pieces.

Entries are added by explicit registration (``@DATASETS.register("digits")``);
a name can be registered once, so a plugin cannot silently replace a built-in.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry", "did_you_mean"]


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """A ' (did you mean ...?)' hint for a misspelt ``name``, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Registry(Generic[T]):
    """Maps names to objects; refuses duplicates and explains unknown names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise KeyError(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: str) -> str:
        known = ", ".join(sorted(self._entries))
        return f"unknown {self.kind} {name!r}{did_you_mean(name, self.names())}; known: {known}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
