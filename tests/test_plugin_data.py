"""Data of any shape and dtype: float samples, [data.params], and the two example plugins
(tabular rows with an MLP, 1-D signals with their own model) trained end to end."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fedcluster.api import run
from fedcluster.catalog import dataset_rows
from fedcluster.cli import main
from fedcluster.config import ConfigError, load_config
from fedcluster.data import DATASETS, ArrayDataset, load_dataset

torch.set_num_threads(1)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TABULAR = EXAMPLES / "plugins" / "tabular_plugin.py"
SIGNAL = EXAMPLES / "plugins" / "signal_plugin.py"
FAST = ["rounds=3", "run.threads=1", "plots.enabled=false"]


def _rows(n: int, f: int, classes: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, f, generator=gen) * 3 + 5, torch.randint(0, classes, (n,), generator=gen)


def test_float_samples_pass_unchanged_by_default():
    x, y = _rows(20, 7, 3)
    ds = ArrayDataset(x, y, x[:5], y[:5], 3)
    assert ds.input_shape == (7,)
    assert ds.normalized(x) is x  # float32, no mean/std: the very tensor
    doubles = x.double()
    assert torch.equal(ds.normalized(doubles), x)  # other floats: only cast


def test_explicit_normalisation_per_feature_and_per_channel():
    x, y = _rows(50, 4, 2)
    mean, std = tuple(x.mean(0).tolist()), tuple(x.std(0).tolist())
    out = ArrayDataset(x, y, x, y, 2, mean, std).normalized(x)
    torch.testing.assert_close(out.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(0), torch.ones(4), atol=1e-5, rtol=0)
    signals = torch.arange(2 * 3 * 5, dtype=torch.uint8).view(2, 3, 5)  # [N, C, L] uint8
    ds = ArrayDataset(signals, y[:2], signals, y[:2], 2, (0.1, 0.2, 0.3), (0.5, 0.5, 0.5))
    want = (signals.float() / 255 - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1)) / 0.5
    torch.testing.assert_close(ds.normalized(signals), want)


def test_array_dataset_refuses_what_it_cannot_use():
    x, y = _rows(10, 4, 2)
    with pytest.raises(ValueError, match="mean and std need 0, 1 or 4 values"):
        ArrayDataset(x, y, x, y, 2, (0.0, 0.0), (1.0, 1.0))
    with pytest.raises(ValueError, match="differ in shape"):
        ArrayDataset(x, y, x[:, :3], y, 2)
    with pytest.raises(ValueError, match="uint8 or float samples"):
        ArrayDataset(x.long(), y, x.long(), y, 2)


PARAMS_PLUGIN = '''
import torch
from fedcluster.data import DATASETS, ArrayDataset

@DATASETS.register("rows-{tag}")
def rows(cfg, width: int = 3, scale: float = 1.0):
    """Constant rows of a given width."""
    x = torch.full((40, width), scale)
    y = torch.arange(40) % 2
    return ArrayDataset(x, y, x, y, 2)

@DATASETS.register("rows-any-{tag}")
def rows_any(cfg, **params):
    """Takes any parameter; width is one of them."""
    if not isinstance(params.get("width", 2), int):
        raise TypeError("width must be an integer")
    return rows(cfg, params.get("width", 2))
'''


@pytest.fixture(scope="module")
def params_plugin(tmp_path_factory):
    path = tmp_path_factory.mktemp("plug") / "params_plugin.py"
    path.write_text(PARAMS_PLUGIN.format(tag="p"))
    return str(path)


def test_data_params_reach_the_builder(params_plugin):
    cfg = load_config(None, ["data.dataset=rows-p", "data.params.width=5",
                             "data.params.scale=2.5"], plugins=[params_plugin])
    assert cfg.data.params == {"width": 5, "scale": 2.5}
    ds = load_dataset(cfg.data)
    assert ds.input_shape == (5,) and float(ds.train_x[0, 0]) == 2.5


def test_data_params_unknown_key_is_a_config_error_naming_it(params_plugin):
    with pytest.raises(ConfigError, match=r"data\.params\.depth: dataset 'rows-p' does not "
                                          r"take it .*it takes: width, scale"):
        load_config(None, ["data.dataset=rows-p", "data.params.depth=2"],
                    plugins=[params_plugin])
    with pytest.raises(ConfigError, match=r"data\.params\.n: dataset 'digits' .*no parameters"):
        load_config(None, ["data.params.n=1"])
    # a builder taking **params gets every key; its own TypeError names the parameters
    cfg = load_config(None, ["data.dataset=rows-any-p", "data.params.width=4",
                             "data.params.other='x'"], plugins=[params_plugin])
    assert load_dataset(cfg.data).input_shape == (4,)
    bad = load_config(None, ["data.dataset=rows-any-p", "data.params.width='wide'"],
                      plugins=[params_plugin])
    with pytest.raises(ConfigError, match=r"refused its parameters \(data\.params\.width = "
                                          r"'wide'\): TypeError: width must be an integer"):
        load_dataset(bad.data)


def test_data_params_from_a_toml_table(tmp_path, params_plugin):
    (tmp_path / "c.toml").write_text(f'plugins = ["{params_plugin}"]\n[data]\n'
                                     'dataset = "rows-p"\n[data.params]\nwidth = 6\n')
    assert load_config(tmp_path / "c.toml").data.params == {"width": 6}


def test_tensors_dataset_takes_float_rows(tmp_path):
    x, y = _rows(60, 9, 3)
    save_file({"x": x[:40], "y": y[:40]}, str(tmp_path / "train.safetensors"),
              metadata={"num_classes": "3"})
    save_file({"x": x[40:], "y": y[40:]}, str(tmp_path / "test.safetensors"))
    ds = load_dataset(load_config(None, ["data.dataset=tensors", f"data.root={tmp_path}"]).data)
    assert ds.input_shape == (9,) and ds.num_classes == 3 and ds.mean == ()
    assert torch.equal(ds.normalized(ds.test_x), x[40:])  # float data passes unchanged


def test_an_image_model_on_rows_is_a_config_error(tmp_path, capsys):
    code = main(["run", str(EXAMPLES / "breast-cancer-plugin.toml"), "model.name=digits-cnn",
                 *FAST, "--out", str(tmp_path / "r"), "-q"])
    assert code == 2
    assert "model.name = 'digits-cnn' cannot take samples of shape [30]" in capsys.readouterr().err


def _majority(ds: ArrayDataset) -> float:
    return float(np.bincount(ds.test_y.numpy()).max() / len(ds.test_y))


def test_tabular_plugin_trains_above_the_majority_class(tmp_path):
    result = run(EXAMPLES / "breast-cancer-plugin.toml", overrides=FAST,
                 run_dir=tmp_path / "run")
    ds = result.summary.context.federation.dataset
    assert ds.input_shape == (30,) and ds.train_x.dtype == torch.float32
    # the plugin's explicit per-feature normalisation: the training rows standardised
    z = ds.normalized(ds.train_x)
    torch.testing.assert_close(z.mean(0), torch.zeros(30), atol=1e-4, rtol=0)
    assert len(result.rounds) == 3
    assert result.accuracy > _majority(ds) + 0.15  # 0.63 by always saying "benign"
    # the saved model reloads for rows: predictions on the test rows match the run's
    from fedcluster.api import load_models

    model = load_models(tmp_path / "run")[0]
    with torch.no_grad():
        pred = model(ds.normalized(ds.test_x)).argmax(1)
    assert float((pred == ds.test_y).float().mean()) > _majority(ds) + 0.15


def test_signal_plugin_trains_above_chance(tmp_path):
    result = run(EXAMPLES / "waves-plugin.toml", overrides=FAST)
    ds = result.summary.context.federation.dataset
    assert ds.input_shape == (1, 64) and ds.num_classes == 4
    assert ds.normalized(ds.train_x) is ds.train_x  # float signals, used as they are
    assert result.accuracy > 2 * (1 / 4)  # chance is 0.25
    # [data.params] shape the data: more classes, longer windows
    from fedcluster.data import load_dataset as load

    cfg = load_config(EXAMPLES / "waves-plugin.toml",
                      ["data.params.classes=6", "data.params.length=128"])
    six = load(cfg.data)
    assert six.input_shape == (1, 128) and six.num_classes == 6
    assert set(six.train_y.tolist()) == set(range(6))


def test_signal_data_is_the_same_for_a_seed_and_classed_by_frequency():
    cfg = load_config(EXAMPLES / "waves-plugin.toml", ["data.params.noise=0.0"]).data
    a, b = load_dataset(cfg), load_dataset(cfg)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.train_y, b.train_y)
    # without noise the strongest frequency of a wave is its class's cycle count (base 1)
    spectrum = torch.fft.rfft(a.train_x[:, 0], dim=-1).abs()
    assert torch.equal(spectrum[:, 1:].argmax(-1) + 1, a.train_y + 2)


def test_datasets_lists_plugin_datasets_with_their_description(capsys):
    load_config(None, [], plugins=[str(TABULAR), str(SIGNAL)])
    rows = {r[0]: r for r in dataset_rows(load_config(None, []).data)}
    assert rows["waves"][4] == DATASETS.get("waves").__doc__.splitlines()[0]
    assert rows["sklearn-table"][3] == "-"
    assert main(["datasets", f"--plugin={SIGNAL}"]) == 0
    assert "Synthetic sine" in capsys.readouterr().out


def test_example_configs_name_their_params():
    saved = json.dumps(load_config(EXAMPLES / "waves-plugin.toml").to_dict())
    assert '"params": {"samples": 1500' in saved
