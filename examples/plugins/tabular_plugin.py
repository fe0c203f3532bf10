"""An example plugin for tabular data: rows of float features, no images anywhere.

``sklearn-table`` is one of scikit-learn's bundled tables (no download) as float32
rows ``[N, F]``: ``breast-cancer`` (569 tumours, 30 features, 2 classes) or ``wine``
(178 wines, 13 features, 3 classes), picked with ``[data.params] table``. The features
are standardised explicitly: the dataset hands the training rows' per-feature mean and
std to fedcluster, which normalises every row with them (the test rows too). The
built-in ``mlp`` model takes rows of any width. Use it with::

    fedcluster run examples/breast-cancer-plugin.toml
    fedcluster run --plugin examples/plugins/tabular_plugin.py data.dataset=sklearn-table \\
        model.name=mlp model.hidden=[32] data.params.table=wine data.num_clients=4
"""

import torch

from fedcluster.config import DataConfig
from fedcluster.data import DATASETS, ArrayDataset

TABLES = ("breast-cancer", "wine")


@DATASETS.register("sklearn-table")
def sklearn_table(cfg: DataConfig, table: str = "breast-cancer",
                  test_size: float = 0.25) -> ArrayDataset:
    """scikit-learn's breast-cancer or wine table as float rows [N, F] (data.params.table)."""
    from sklearn.datasets import load_breast_cancer, load_wine
    from sklearn.model_selection import train_test_split

    loaders = {"breast-cancer": load_breast_cancer, "wine": load_wine}
    if table not in loaders:
        raise ValueError(f"data.params.table = {table!r}: expected one of {', '.join(TABLES)}")
    bunch = loaders[table]()
    x_tr, x_te, y_tr, y_te = train_test_split(  # a fixed split: the same test rows every run
        bunch.data.astype("float32"), bunch.target, test_size=test_size, random_state=0,
        stratify=bunch.target)
    train_x = torch.from_numpy(x_tr)
    return ArrayDataset(
        train_x=train_x, train_y=torch.from_numpy(y_tr).long(),
        test_x=torch.from_numpy(x_te), test_y=torch.from_numpy(y_te).long(),
        num_classes=len(bunch.target_names),
        mean=tuple(train_x.mean(dim=0).tolist()),  # one per feature: explicit normalisation
        std=tuple(train_x.std(dim=0).clamp_min(1e-6).tolist()),
    )
