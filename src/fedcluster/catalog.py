"""What ``fedcluster datasets`` and ``fedcluster models`` list: every registry entry."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

from .config import DataConfig
from .data import DATASETS
from .data.files import disk_size, files_of
from .models import MODELS

__all__ = ["dataset_rows", "human_size", "model_rows"]


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"  # pragma: no cover


def _summary(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.splitlines()[0] if doc else ""


def _common_dir(paths: list[Path]) -> str:
    parents = {p.parent for p in paths}
    return str(parents.pop()) if len(parents) == 1 else str(paths[0].parent.parent)


def dataset_rows(cfg: DataConfig) -> list[tuple[str, str, str, str, str]]:
    """(name, present, size on disk, where, description) for every registered dataset.

    A dataset that does not declare its files (a plugin's, made in memory) shows "-" for
    presence, size and place; its description is its docstring's first line."""
    rows = []
    for name in DATASETS.names():
        loader = DATASETS.get(name)
        files = files_of(loader, dataclasses.replace(cfg, dataset=name))
        if files is None:
            present, size, where = "-", "-", "-"
        elif not files:
            present, size, where = "-", "-", "(needs data.folder)"
        else:
            ok = all(f.exists() for f in files)
            present = "yes" if ok else "no"
            size = human_size(disk_size(files)) if ok else "-"
            where = _common_dir(files)
        if name == "digits":
            present, size, where = "yes", "bundled", "scikit-learn"
        aliases = [n for n in DATASETS.names() if n != name and DATASETS.get(n) is loader]
        alias = f" (= {', '.join(aliases)})" if aliases else ""
        rows.append((name + alias, present, size, where, _summary(loader)))
    return rows


def model_rows() -> list[tuple[str, str]]:
    """(name, description) for every registered model."""
    return [(name, _summary(MODELS.get(name))) for name in MODELS.names()]
