"""A user's plugin file registers a model and a dataset, and a run uses them."""

import json
import textwrap

import pytest

from fedcluster.cli import main
from fedcluster.config import ConfigError, load_config
from fedcluster.data import DATASETS
from fedcluster.models import MODELS
from fedcluster.plugins import load_plugin

PLUGIN = textwrap.dedent('''
    from torch import nn
    from fedcluster.config import DataConfig
    from fedcluster.data import DATASETS, ArrayDataset, load_dataset
    from fedcluster.models import MODELS

    @DATASETS.register("{dataset}")
    def few_digits(cfg):
        """Digits 0-4 only."""
        d = load_dataset(DataConfig(dataset="digits"))
        tr, te = d.train_y < 5, d.test_y < 5
        return ArrayDataset(d.train_x[tr], d.train_y[tr], d.test_x[te], d.test_y[te], 5,
                            d.mean, d.std)

    @MODELS.register("{model}")
    def linear(spec, cfg):
        """A linear classifier."""
        c, h, w = spec.input_shape
        return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, spec.num_classes))
''')


def _plugin(tmp_path, tag):
    path = tmp_path / f"plugin_{tag}.py"
    path.write_text(PLUGIN.format(dataset=f"few-digits-{tag}", model=f"linear-{tag}"))
    return path


def test_plugin_file_registers_model_and_dataset(tmp_path):
    path = _plugin(tmp_path, "a")
    cfg = load_config(None, ["data.dataset=few-digits-a", "model.name=linear-a"],
                      plugins=[str(path)])
    assert "few-digits-a" in DATASETS and "linear-a" in MODELS
    assert cfg.plugins == [str(path.resolve())]
    load_plugin(str(path.resolve()))  # naming it again does not register twice


def test_config_plugins_are_relative_to_the_config(tmp_path):
    _plugin(tmp_path, "b")
    (tmp_path / "cfg.toml").write_text(
        'plugins = ["plugin_b.py"]\n[data]\ndataset = "few-digits-b"\n[model]\nname = "linear-b"\n')
    cfg = load_config(tmp_path / "cfg.toml")
    assert cfg.plugins == [str((tmp_path / "plugin_b.py").resolve())]


def test_duplicate_registration_is_refused(tmp_path):
    path = tmp_path / "dup.py"
    path.write_text(PLUGIN.format(dataset="mnist", model="linear-dup"))
    with pytest.raises(ConfigError, match="dataset 'mnist' is already registered"):
        load_config(None, [], plugins=[str(path)])


def test_module_path_plugin(tmp_path, monkeypatch):
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(PLUGIN.format(dataset="few-digits-m", model="linear-m"))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = load_config(None, ["model.name=linear-m", "plugins=['userpkg.models']"])
    assert cfg.plugins == ["userpkg.models"] and "linear-m" in MODELS


def test_missing_plugin_errors(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(None, [], plugins=[str(tmp_path / "nope.py")])
    with pytest.raises(ConfigError, match="no_such_module_xyz"):
        load_config(None, [], plugins=["no_such_module_xyz"])
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="failed to load: RuntimeError: boom"):
        load_config(None, [], plugins=[str(tmp_path / "broken.py")])


def test_cli_run_uses_plugin_model_and_dataset(tmp_path, capsys):
    path = _plugin(tmp_path, "cli")
    out = tmp_path / "run"
    code = main(["run", "data.dataset=few-digits-cli", "model.name=linear-cli",
                 "data.num_clients=4", "cluster.k=1", "rounds=2", "run.threads=1",
                 "--plugin", str(path), "--out", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    rounds = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rounds) == 2
    assert rounds[-1]["clusters"][0]["eval_examples"] > 0
    saved = (out / "config.toml").read_text()
    assert 'name = "linear-cli"' in saved and str(path.resolve()) in saved
    # the saved config reruns with the plugin, from anywhere
    assert load_config(out / "config.toml").model.name == "linear-cli"
    assert main(["models", "--plugin", str(path)]) == 0
    listing = capsys.readouterr().out
    assert "linear-cli" in listing and "A linear classifier" in listing


def test_example_plugin_partition_and_shift_end_to_end(tmp_path, capsys):
    """examples/plugins/groups_plugin.py: its partition and shift drive a real run."""
    from pathlib import Path

    import numpy as np
    import torch

    from fedcluster.data import build_federation, load_dataset

    path = Path(__file__).parents[1] / "examples" / "plugins" / "groups_plugin.py"
    out = tmp_path / "run"
    args = ["data.partition=label-blocks", "data.shift=flip-rotate", "data.groups=4",
            "data.num_clients=8", "data.min_size=1", "cluster.k=4", "rounds=2",
            "run.threads=1", "model.name=mlp", "model.hidden=[16]", "plots.enabled=false"]
    assert main(["run", *args, "--plugin", str(path), "--out", str(out), "-q"]) == 0, \
        capsys.readouterr().err
    saved = (out / "config.toml").read_text()
    assert 'partition = "label-blocks"' in saved and 'shift = "flip-rotate"' in saved
    assert json.loads((out / "partition.json").read_text())["groups"] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    # the federation is what the plugin's functions say: group g's images are the
    # originals under the g-th symmetry, and each client holds one block of sorted labels
    cfg = load_config(None, args, plugins=[str(path)]).data
    base = load_dataset(cfg)
    fed = build_federation(base, cfg, seed=0)
    n = len(base.train_y)
    for c in range(8):
        g = int(fed.groups[c])
        idx = fed.train_idx[c]
        orig = torch.from_numpy(idx - g * n)
        want = torch.rot90(base.train_x[orig], g % 4, dims=(-2, -1))
        assert torch.equal(fed.dataset.train_x[torch.from_numpy(idx)], want)
        labels = base.train_y[orig].numpy()
        sorted_labels = np.sort(base.train_y.numpy())
        block = np.array_split(np.arange(n), 2)[c % 2]  # 2 clients per group
        assert sorted(labels.tolist()) == sorted_labels[block].tolist()
    with pytest.raises(ConfigError, match=r"data.shift: unknown shift 'flip-rotat' "
                                          r"\(did you mean 'flip-rotate'\?\)"):
        load_config(None, ["data.shift=flip-rotat", "data.groups=2"], plugins=[str(path)])
