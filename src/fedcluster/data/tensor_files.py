"""A dataset kept as two safetensors files, the simplest way for a site to bring its data.

``data.dataset = "tensors"`` reads ``<data.root>/train.safetensors`` and
``<data.root>/test.safetensors``, each holding ``x`` (samples ``[N, *shape]``: uint8
images ``[N, C, H, W]``, or float data of any shape such as rows ``[N, F]`` or signals
``[N, C, L]``) and ``y`` (integer labels ``[N]``). Optional string metadata in the
training file: ``num_classes`` (else the largest label + 1), ``mean`` and ``std``
(comma-separated, one per channel, or one for all). Without them uint8 images are
normalised per channel with the training images' statistics, and float samples are used
as they are (normalise them before saving, or give ``mean``/``std``). Sites of one
federation should set ``num_classes`` so their models agree even when they lack some
labels.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..config import DataConfig
from .files import DataError, expected_files, require_files
from .sources import ArrayDataset

__all__ = ["tensor_files"]


def _files(cfg: DataConfig) -> list[Path]:
    return [Path(cfg.root) / "train.safetensors", Path(cfg.root) / "test.safetensors"]


def _read(path: Path) -> tuple[torch.Tensor, torch.Tensor, dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            if not {"x", "y"} <= keys:
                raise DataError(f"{path}: expected tensors 'x' and 'y', found {sorted(keys)}")
            x, y, meta = f.get_tensor("x"), f.get_tensor("y"), f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:  # a corrupt or truncated file
        raise DataError(f"{path}: not a readable safetensors file ({type(e).__name__}: "
                        f"{e}); write it again with safetensors.torch.save_file") from None
    ok_x = (x.dtype == torch.uint8 and x.dim() == 4) or (x.is_floating_point() and x.dim() >= 2)
    if not ok_x or y.dim() != 1 or len(x) != len(y) or y.is_floating_point():
        raise DataError(f"{path}: expected x uint8 [N, C, H, W] or float [N, *shape] and "
                        f"integer y [N], got x {x.dtype} {list(x.shape)} and y {y.dtype} "
                        f"{list(y.shape)}")
    return x, y.long(), meta


def _floats(meta: dict[str, str], key: str, default: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(float(v) for v in meta[key].split(",")) if key in meta else default


@expected_files(_files)
def tensor_files(cfg: DataConfig) -> ArrayDataset:
    """Your own samples and labels: <data.root>/train.safetensors and test.safetensors."""
    root = Path(cfg.root)
    require_files("tensors", _files(cfg), "write them with safetensors.torch.save_file: x uint8 "
                  "[N, C, H, W] or float [N, *shape], y labels [N], metadata num_classes "
                  "(see README, local sites)")
    train_x, train_y, meta = _read(root / "train.safetensors")
    test_x, test_y, _ = _read(root / "test.safetensors")
    if train_x.shape[1:] != test_x.shape[1:] or train_x.dtype != test_x.dtype:
        raise DataError(f"{root}: train samples {train_x.dtype} {list(train_x.shape[1:])} and "
                        f"test samples {test_x.dtype} {list(test_x.shape[1:])} differ")
    num_classes = int(meta.get("num_classes", int(max(train_y.max(), test_y.max())) + 1))
    mean, std = _floats(meta, "mean", ()), _floats(meta, "std", ())
    if train_x.dtype == torch.uint8 and not mean:  # images: per-channel statistics
        scaled = train_x.float() / 255.0
        mean = tuple(scaled.mean(dim=(0, 2, 3)).tolist())
        std = tuple(scaled.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist())
    try:
        return ArrayDataset(train_x, train_y, test_x, test_y, num_classes, mean, std)
    except ValueError as e:  # mean/std of the wrong length
        raise DataError(f"{root / 'train.safetensors'}: {e}") from None
