"""An example plugin: one dataset and one model, registered by decorators.

Use it with ``fedcluster run cfg.toml --plugin examples/plugins/my_plugin.py`` or
``plugins = ["plugins/my_plugin.py"]`` in a config (relative to the config file).
"""

from torch import nn

from fedcluster.config import DataConfig, ModelConfig
from fedcluster.data import DATASETS, ArrayDataset, load_dataset
from fedcluster.data.augment import Augmentation
from fedcluster.models import MODELS, ModelSpec


@DATASETS.register("digits-flipped")
def digits_flipped(cfg: DataConfig) -> ArrayDataset:
    """scikit-learn's digits mirrored left to right; random crops (pad 1) when training."""
    base = load_dataset(DataConfig(dataset="digits"))
    return ArrayDataset(
        train_x=base.train_x.flip(-1), train_y=base.train_y,
        test_x=base.test_x.flip(-1), test_y=base.test_y,
        num_classes=base.num_classes, mean=base.mean, std=base.std,
        augmentation=Augmentation(crop_padding=1),
    )


@MODELS.register("tiny-mlp")
def tiny_mlp(spec: ModelSpec, cfg: ModelConfig) -> nn.Module:
    """One hidden layer of 32 units on the flattened image."""
    c, h, w = spec.input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 32), nn.ReLU(),
                         nn.Linear(32, spec.num_classes))

