"""Dataset sources. A source returns the whole dataset as tensors: samples ``[N, *shape]``
(uint8 or float) and int64 labels ``[N]``.

Register a new source with ``@DATASETS.register("name")`` on a function taking the
``DataConfig`` (and, as keyword arguments, the keys of the config's ``[data.params]``
table) and returning an :class:`ArrayDataset`; its docstring's first line is its
description in ``fedcluster datasets``. Decorate it with
:func:`~fedcluster.data.files.expected_files` so ``fedcluster datasets`` can tell
whether its files are present.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..config import ConfigError, DataConfig
from ..registry import Registry
from .augment import Augmentation

__all__ = ["DATASETS", "ArrayDataset", "check_params", "load_dataset"]


@dataclass(frozen=True)
class ArrayDataset:
    """A dataset held in memory: samples ``[N, *shape]`` and labels ``[N]`` int64.

    Samples of any shape: images ``[N, C, H, W]``, 1-D signals ``[N, C, L]``, tabular
    rows ``[N, F]``. uint8 samples are scaled to [0, 1]; float ones are used as they are.
    Normalisation is explicit: ``mean`` and ``std`` hold one value per entry of the
    samples' first axis (a channel, or a feature of a row), or a single value for all;
    empty (the default) means no normalisation, so float data passes unchanged."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    augmentation: Augmentation | None = None  # the training augmentation, when any

    def __post_init__(self) -> None:
        for name in ("train_x", "test_x"):
            x = getattr(self, name)
            if x.dim() < 2 or not (x.dtype == torch.uint8 or x.is_floating_point()):
                raise ValueError(f"ArrayDataset.{name}: expected uint8 or float samples "
                                 f"[N, *shape], got {x.dtype} {list(x.shape)}")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(f"ArrayDataset: train samples {list(self.train_x.shape[1:])} and "
                             f"test samples {list(self.test_x.shape[1:])} differ in shape")
        width = self.train_x.shape[1]
        if len(self.mean) != len(self.std) or len(self.mean) not in (0, 1, width):
            raise ValueError(f"ArrayDataset: mean and std need 0, 1 or {width} values (the "
                             f"samples' first axis), got {len(self.mean)} and {len(self.std)}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample (``[C, H, W]`` for images)."""
        return tuple(self.train_x.shape[1:])

    def normalized(self, x: torch.Tensor) -> torch.Tensor:
        """Samples as float32 (uint8 scaled to [0, 1] first), normalised with ``mean`` and
        ``std`` along the samples' first axis when they are given.

        float32 samples without normalisation (or with mean 0 and std 1) are returned as
        they are (no copy)."""
        plain = set(self.mean) <= {0.0} and set(self.std) <= {1.0}
        if x.dtype == torch.float32 and plain:
            return x
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        if plain:
            return x
        shape = (1, -1, *([1] * (x.dim() - 2)))
        mean = torch.tensor(self.mean, device=x.device).view(shape)
        std = torch.tensor(self.std, device=x.device).view(shape)
        return (x - mean) / std


DATASETS: Registry[Callable[[DataConfig], ArrayDataset]] = Registry("dataset")


@DATASETS.register("digits")
def digits(cfg: DataConfig) -> ArrayDataset:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes, no download).

    A fixed stratified 80/20 train/test split (independent of the run's seed, so every
    run sees the same test set).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, bunch.target, test_size=0.2, random_state=0, stratify=bunch.target
    )
    train_x = torch.from_numpy(x_tr)
    scaled = train_x.float() / 255.0
    return ArrayDataset(
        train_x=train_x,
        train_y=torch.from_numpy(y_tr).long(),
        test_x=torch.from_numpy(x_te),
        test_y=torch.from_numpy(y_te).long(),
        num_classes=10,
        mean=(float(scaled.mean()),),
        std=(float(scaled.std()),),
    )


def check_params(cfg: DataConfig) -> None:
    """ConfigError naming the key when ``cfg.dataset``'s builder does not take a key of
    ``[data.params]`` (a builder with ``**kwargs`` takes any: the keys are its business)."""
    builder = DATASETS.get(cfg.dataset)
    if not cfg.params:
        return
    try:
        inspect.signature(builder).bind(cfg, **cfg.params)
    except TypeError as e:
        accepted = [p.name for p in list(inspect.signature(builder).parameters.values())[1:]
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        bad = [k for k in cfg.params if k not in accepted] or list(cfg.params)
        raise ConfigError(f"data.params.{bad[0]}: dataset {cfg.dataset!r} does not take it "
                          f"({e}); it takes: {', '.join(accepted) or 'no parameters'}") from None


def load_dataset(cfg: DataConfig) -> ArrayDataset:
    """Load ``cfg.dataset`` (all files checked, and downloaded if asked, before returning),
    its builder called with the ``[data.params]`` table as keyword arguments.

    With ``cfg.normalize = false`` inputs are only scaled to [0, 1] (uint8) or used as
    they are (float): no mean and std, as in IFCA's rotated-MNIST setting.
    """
    check_params(cfg)
    try:
        ds = DATASETS.get(cfg.dataset)(cfg, **cfg.params)
    except TypeError as e:
        if not cfg.params:
            raise
        keys = ", ".join(f"data.params.{k} = {v!r}" for k, v in cfg.params.items())
        raise ConfigError(f"dataset {cfg.dataset!r} refused its parameters ({keys}): "
                          f"TypeError: {e}") from e
    if not cfg.normalize:
        ds = dataclasses.replace(ds, mean=(), std=())
    return ds
