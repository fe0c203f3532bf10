"""Where datasets live on disk, what is missing, and downloading once under a file lock.

Every dataset keeps its files in its own directory under ``data.root``
(``data/mnist``, ``data/cifar-10``, ``data/dog-and-cat``: the reference program's
layout). Preparing a directory (downloading, extracting, building a decode cache)
happens under a lock file in it, so N processes starting together (``torchrun``)
do the work once while the others wait and then find the files in place.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout

__all__ = [
    "DataError", "disk_size", "expected_files", "files_of", "locked", "require_files",
    "run_once",
]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class DataError(RuntimeError):
    """Dataset files are missing, corrupt, or not in the expected layout."""


def expected_files(files: Callable[[Any], list[Path]]) -> Callable[[F], F]:
    """Declare which files a dataset loader needs, given the ``DataConfig``.

    ``fedcluster datasets`` uses it to say whether a dataset is present and how big it is.
    """

    def mark(loader: F) -> F:
        loader.files = files  # type: ignore[attr-defined]
        return loader

    return mark


def files_of(loader: Callable[..., Any], cfg: Any) -> list[Path] | None:
    """The files ``loader`` needs under ``cfg``, or None when it does not declare them."""
    files = getattr(loader, "files", None)
    return None if files is None else files(cfg)


def disk_size(paths: Sequence[Path]) -> int:
    """Bytes on disk of the given files and directory trees (missing ones count 0)."""
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            for dirpath, _, names in os.walk(p):
                total += sum((Path(dirpath) / n).stat().st_size for n in names)
    return total


def require_files(dataset: str, paths: Sequence[Path], how: str) -> None:
    """Raise :class:`DataError` listing every missing path, and how to get them."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        listing = "\n".join(f"  {p}" for p in missing)
        raise DataError(f"dataset {dataset!r}: {len(missing)} of {len(paths)} expected files "
                        f"are missing:\n{listing}\n{how}")


@contextmanager
def locked(directory: Path, timeout: float = -1) -> Iterator[None]:
    """Hold ``directory/.fedcluster.lock`` (created with the directory) while preparing it."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(directory / ".fedcluster.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another process preparing %s", directory)
        lock.acquire(timeout=timeout)
    try:
        yield
    finally:
        lock.release()


def run_once(directory: Path, present: Callable[[], bool], prepare: Callable[[], None]) -> bool:
    """Run ``prepare`` unless ``present()``; under the directory's lock, so once across processes.

    Returns True when this call did the work.
    """
    if present():
        return False
    with locked(directory):
        if present():  # another process finished while we waited
            return False
        prepare()
        return True
