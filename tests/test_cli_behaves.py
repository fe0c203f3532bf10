"""A command line that behaves: options and overrides in any order, ``--version``,
``config --defaults``, derived run names, JSON configs with ``//`` comments, CUDA asked
for where there is none refused before any work, and ``validate --build``."""

from __future__ import annotations

import dataclasses
import json
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import torch
from _datafiles import write_mnist

import fedcluster
from fedcluster.cli import main, parse_args
from fedcluster.config import Config, ConfigError, load_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DIGITS = str(EXAMPLES / "digits.toml")
TINY = ["rounds=1", "data.num_clients=4", "run.threads=1", "run.workers=1",
        "plots.enabled=false"]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA refusal")


@pytest.mark.parametrize(("argv", "config", "plugin", "quiet"), [
    (["run", DIGITS, "--plugin", "p.py", "rounds=2"], [DIGITS, "rounds=2"], ["p.py"], False),
    (["run", "rounds=1", "--quiet", "data.num_clients=4"],
     ["rounds=1", "data.num_clients=4"], [], True),
    (["run", "-q", DIGITS, "a=1", "--plugin=p.py", "b=2", "a=3"],
     [DIGITS, "a=1", "b=2", "a=3"], ["p.py"], True),
])
def test_run_takes_options_and_overrides_in_any_order(argv, config, plugin, quiet):
    args = parse_args(argv)
    assert (args.config, args.plugin, args.quiet) == (config, plugin, quiet)


def test_validate_and_partition_take_overrides_after_options():
    args = parse_args(["validate", DIGITS, "--build", "rounds=3", "--plugin", "p", "seed=1"])
    assert (args.file, args.overrides, args.build) == (DIGITS, ["rounds=3", "seed=1"], True)
    assert parse_args(["partition", "--plugin", "p", "rounds=3"]).config == ["rounds=3"]


@pytest.mark.parametrize("argv", [["run", "--bogus"], ["run", "rounds=1", "--quiet", "--x"],
                                  ["models", "stray"], ["report", "dir", "extra"]])
def test_unknown_options_and_stray_words_stay_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_a_run_with_overrides_on_both_sides_of_an_option_uses_them_all(tmp_path):
    """Overrides after ``-q`` count, and the run directory, with no name given, is named
    after the dataset, the method and k."""
    code = main(["run", "rounds=1", "-q", "data.num_clients=4", "cluster.k=3", *TINY[2:],
                 f"run.out={tmp_path}"])
    assert code == 0
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith("digits-refine-k3-")
    saved = load_config(run_dir / "config.toml")
    assert (saved.rounds, saved.data.num_clients, saved.cluster.k) == (1, 4, 3)
    assert saved.name == "digits-refine-k3"  # written resolved: a resume keeps it
    assert json.loads((run_dir / "summary.json").read_text())["name"] == "digits-refine-k3"


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"fedcluster {version('fedcluster')}"
    assert version("fedcluster") == fedcluster.__version__


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def test_config_defaults_prints_every_key_and_loads_back(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FEDCLUSTER_TELEGRAM_TOKEN", "123:abc")  # not a default: left out
    assert main(["config", "--defaults"]) == 0
    text = capsys.readouterr().out
    printed = _flat(tomllib.loads(text))
    expected = _flat(dataclasses.asdict(Config()))
    assert printed.keys() == expected.keys()
    assert printed["name"] == "" and printed["rounds"] == Config.rounds
    assert {k: v for k, v in printed.items() if k != "name"} == {
        k: v for k, v in expected.items() if k != "name"}
    assert printed["notify.telegram.token"] == ""
    path = tmp_path / "defaults.toml"
    path.write_text(text)
    assert load_config(path, environ={}) == load_config(None, environ={})


def test_config_prints_a_file_resolved_and_refuses_defaults_with_overrides(capsys):
    assert main(["config", DIGITS, "rounds=7", "cluster.k=3"]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    assert printed["rounds"] == 7 and printed["cluster"]["k"] == 3
    assert printed["name"] == load_config(DIGITS).name
    assert main(["config", "--defaults", "rounds=7"]) == 2
    assert "--defaults" in capsys.readouterr().err


@pytest.mark.parametrize(("overrides", "name"), [
    ([], "digits-refine-k2"),
    (["cluster.method=kmeans"], "digits-kmeans-k2"),
    (["data.dataset=mnist", "cluster.method=ifca", "cluster.k=3"], "mnist-ifca-k3"),
    (["cluster.k=auto", "cluster.method=cfl"], "digits-cfl-kauto"),
    (["mode=centralized"], "digits-centralized"),
    (["name=mine", "data.dataset=mnist"], "mine"),
])
def test_default_run_names_say_dataset_method_and_k(overrides, name):
    assert load_config(None, overrides).name == name


def test_json_configs_may_hold_comments(tmp_path):
    path = tmp_path / "conf.json"
    path.write_text('{\n'
                    '  "rounds": 3,  // three rounds\n'
                    '  // a whole line of comment, with "quotes"\n'
                    '  "data": {"folder": "C:\\\\d//x\\"y//z"},  // a // in a string stays\n'
                    '  "notify": {"telegram": {"api_url": "https://example.org//bot"}}\n'
                    '}  // the end')
    cfg = load_config(path)
    assert cfg.rounds == 3
    assert cfg.data.folder == 'C:\\d//x"y//z'
    assert cfg.notify.telegram.api_url == "https://example.org//bot"


def test_the_reference_conf_json_with_comments_loads(tmp_path):
    path = tmp_path / "conf.json"
    path.write_text('{\n\t"model_name" : "resnet18",  // Model的类型\n'
                    '\t"type" : "cifar",           // 数据集的类型\n'
                    '\t"global_epochs" : 50,       // 全局epoch\n'
                    '\t"local_epochs" : 3,\n\t"k": 3,   // 聚类的簇数\n'
                    '\t"lr" : 0.005,\n\t"lambda" : 0.1\n}\n')
    cfg = load_config(path)
    assert (cfg.model.name, cfg.data.dataset, cfg.rounds, cfg.cluster.k) == (
        "resnet18", "cifar", 50, 3)


def test_a_json_error_after_comments_names_its_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "rounds": 3  // no comma follows\n  "seed": 1\n}\n')
    with pytest.raises(ConfigError, match="line 3"):
        load_config(path)


@no_cuda
@pytest.mark.parametrize("argv", [
    ["run", "run.device=cuda"],
    ["run", "--gpu", "0"],
    ["run", "--nproc", "2", "run.device=cuda"],
    ["run", "--nproc", "2", "--gpu", "1"],
    ["validate", DIGITS, "run.device=cuda:0"],
    ["validate", DIGITS, "--build", "run.device=cuda"],
])
def test_cuda_without_cuda_is_refused_before_any_work(argv, tmp_path, capsys):
    out = tmp_path / "run"
    extra = ["--out", str(out)] if argv[0] == "run" else []
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and err.count("\n") == 1
    assert not out.exists()


PLUGIN = '''
from torch import nn
from fedcluster.models import MODELS


@MODELS.register("cli-bn-net")
def bn_net(spec, cfg):
    c, h, w = spec.input_shape
    return nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Flatten(),
                         nn.Linear(4 * h * w, spec.num_classes))


@MODELS.register("cli-linear-only")
def linear_only(spec, cfg):
    return nn.Linear(64, spec.num_classes)  # takes flat 8x8 inputs only: fails at forward


@MODELS.register("cli-three-out")
def three_out(spec, cfg):
    c, h, w = spec.input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 3))
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("plugin") / "cli_models.py"
    path.write_text(PLUGIN)
    return str(path)


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("mnist")
    write_mnist(root, n_train=40, n_test=20)
    return str(root)


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.name=cat-and-dog-conv-net"],
     "model.name = 'cat-and-dog-conv-net' cannot take samples of shape [1, 28, 28]"),
    (["model.name=cli-linear-only"],
     "model.name = 'cli-linear-only' on data.dataset = 'mnist' (samples of shape "
     "[1, 28, 28], 10 classes): the model cannot take these samples"),
    (["model.name=mnist-cnn", "run.engine=vmap"], "does not support data augmentation"),
    (["model.name=cli-bn-net", "run.engine=vmap", "data.augment=false"],
     "does not support BatchNorm layers"),
    (["model.name=cli-three-out"], "the model's output has shape [2, 3], expected [2, 10]"),
    (["model.name=mnist-cnn", "data.num_clients=4", "data.root=/nonexistent"],
     "expected files are missing"),
])
def test_validate_build_fails_what_would_fail_at_the_first_step(overrides, message, plugin,
                                                                mnist_root, capsys):
    argv = ["validate", DIGITS, "--build", "data.dataset=mnist", f"data.root={mnist_root}",
            *overrides, "--plugin", plugin]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert main([a for a in argv if a != "--build"]) == 0  # the plain check passes it


def test_a_run_with_a_model_too_small_for_the_data_is_refused_with_a_message(
        mnist_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "data.dataset=mnist", f"data.root={mnist_root}", "data.num_clients=2",
                 "data.partition=iid", "model.name=cat-and-dog-conv-net", "-q",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "model.name = 'cat-and-dog-conv-net' cannot take samples of shape [1, 28, 28]" in err
    assert err.count("\n") == 1 and not (out / "metrics.jsonl").exists()


def test_validate_build_reports_what_it_built(plugin, mnist_root, capsys):
    assert main(["validate", DIGITS, "--build", "data.dataset=mnist", f"data.root={mnist_root}",
                 "model.name=mlp", "model.hidden=[5]", "run.device=cpu"]) == 0
    out = capsys.readouterr().out
    params = 28 * 28 * 5 + 5 + 5 * 10 + 10  # a hidden layer of 5, then 10 classes
    assert (f"built on cpu: samples [1, 28, 28], 10 classes, {params:,} parameters, "
            "sequential engine") in out


@pytest.mark.parametrize(("dataset", "where"), [("mnist", "ossci-datasets"),
                                                ("cifar10", "cifar-10-python.tar.gz")])
def test_a_download_without_network_is_one_line_saying_what_to_fetch_where(
        dataset, where, tmp_path, monkeypatch, capsys):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network here")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    out = tmp_path / "run"
    code = main(["run", f"data.dataset={dataset}", "data.download=true",
                 f"data.root={tmp_path / 'data'}", "--out", str(out), "-q"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert f"dataset '{dataset}': data.download = true but the download failed (" \
        in captured.err and "no network here" in captured.err
    assert where in captured.err and str(tmp_path / "data") in captured.err
    assert captured.out == ""  # torchvision's attempts went to the debug log
    assert not (out / "metrics.jsonl").exists()
