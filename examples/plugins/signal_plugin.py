"""An example plugin for 1-D signals: a synthetic dataset and a 1-D convolutional model.

``waves`` generates noisy sine and square waves ``[N, 1, length]`` (float32, used as
they are: no normalisation) whose class is their frequency: class ``c`` makes ``c + 1``
cycles per window (with ``base`` cycles added to all), at a random phase and amplitude.
Everything comes from ``[data.params] seed``, so the data is the same in every run and on
every rank. ``signal-cnn`` takes samples ``[C, L]``. Use it with::

    fedcluster run examples/waves-plugin.toml
    fedcluster run --plugin examples/plugins/signal_plugin.py data.dataset=waves \\
        model.name=signal-cnn data.params.classes=6 data.params.noise=0.5
"""

import numpy as np
import torch
from torch import nn

from fedcluster.config import DataConfig, ModelConfig
from fedcluster.data import DATASETS, ArrayDataset
from fedcluster.models import MODELS, ModelSpec


def make_waves(n: int, length: int, classes: int, base: int, noise: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` waves ``[n, 1, length]`` and their classes: sines and squares with
    ``base + c + 1`` cycles per window for class ``c``, random phase and amplitude in
    [0.5, 1.5], plus Gaussian noise of std ``noise``."""
    y = rng.integers(0, classes, size=n)
    cycles = (base + y + 1)[:, None]
    t = np.arange(length)[None, :] / length
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    wave = np.sin(2 * np.pi * cycles * t + phase)
    square = rng.random(n) < 0.5
    wave[square] = np.sign(wave[square])
    x = rng.uniform(0.5, 1.5, size=(n, 1)) * wave + noise * rng.standard_normal((n, length))
    return x[:, None, :].astype(np.float32), y


@DATASETS.register("waves")
def waves(cfg: DataConfig, samples: int = 1500, length: int = 64, classes: int = 4,
          base: int = 1, noise: float = 0.3, seed: int = 0) -> ArrayDataset:
    """Synthetic sine and square waves [N, 1, length], classed by frequency (data.params)."""
    if samples < 2 * classes or length < 4 * (base + classes) or classes < 2:
        raise ValueError(f"waves: need classes >= 2, samples >= 2 x classes and length >= "
                         f"4 x (base + classes) samples per window (got samples={samples}, "
                         f"length={length}, classes={classes}, base={base})")
    rng = np.random.default_rng(seed)
    x, y = make_waves(samples, length, classes, base, noise, rng)
    cut = int(0.8 * samples)
    return ArrayDataset(  # float samples, no mean/std: they reach the model unchanged
        train_x=torch.from_numpy(x[:cut]), train_y=torch.from_numpy(y[:cut]).long(),
        test_x=torch.from_numpy(x[cut:]), test_y=torch.from_numpy(y[cut:]).long(),
        num_classes=classes)


@MODELS.register("signal-cnn")
def signal_cnn(spec: ModelSpec, cfg: ModelConfig) -> nn.Module:
    """Two 1-D convolutions and a dense layer for signals [C, L]."""
    channels, length = spec.input_shape  # ValueError for images or rows: not for this model
    if length < 8:
        raise ValueError(f"signal-cnn needs signals of at least 8 samples, got {length}")
    return nn.Sequential(
        nn.Conv1d(channels, 16, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(16, 32, 5, padding=2), nn.ReLU(), nn.AdaptiveMaxPool1d(4),
        nn.Flatten(), nn.Linear(32 * 4, spec.num_classes),
    )
