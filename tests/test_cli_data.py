"""`fedcluster datasets`, the --gpu flag, missing data before training, and MNIST end to end."""

import inspect

import pytest
import torch
from _datafiles import write_mnist

from fedcluster.catalog import dataset_rows
from fedcluster.cli import build_parser, main
from fedcluster.config import DataConfig, load_config
from fedcluster.data import DATASETS
from fedcluster.loop import run_federation

torch.set_num_threads(1)


def test_dataset_rows_report_presence_and_size(tmp_path):
    write_mnist(tmp_path, n_train=10, n_test=5)
    rows = {r[0]: r for r in dataset_rows(DataConfig(root=str(tmp_path)))}
    name, present, size, where, about = rows["mnist"]
    assert about == inspect.getdoc(DATASETS.get("mnist")).splitlines()[0]
    expected = sum(f.stat().st_size for f in (tmp_path / "mnist/MNIST/raw").iterdir())
    assert present == "yes" and where == str(tmp_path / "mnist/MNIST/raw")
    assert size == f"{expected / 1024:.1f} KB"
    assert rows["cifar10 (= cifar)"][1] == "no"
    assert rows["dog-and-cat"][1] == "no" and rows["digits"][1] == "yes"


def test_datasets_command_lists_every_dataset(tmp_path, capsys):
    write_mnist(tmp_path, n_train=10, n_test=5)
    assert main(["datasets", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("mnist", "cifar10", "cifar", "dog-and-cat", "image-folder", "digits"):
        assert name in out
    assert "yes" in out and "no" in out


def test_gpu_flag_maps_to_run_device():
    from fedcluster.run_command import _run_overrides

    parser = build_parser()
    assert _run_overrides(parser.parse_args(["run", "--gpu", "1"]), []) == ["run.device=cuda:1"]
    assert _run_overrides(parser.parse_args(["run", "--gpu", "-1"]), []) == ["run.device=cpu"]
    assert load_config(None, ["run.device=cuda:1"]).run.device == "cuda:1"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_gpu_flag_without_cuda_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        run_federation(load_config(None, ["run.device=cuda:0", "rounds=1"]))


def test_missing_data_fails_before_training(tmp_path, capsys):
    code = main(["run", "data.dataset=mnist", f"data.root={tmp_path}", "model.name=mnist-cnn",
                 "--out", str(tmp_path / "run"), "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert "4 of 4 expected files are missing" in err and "train-images-idx3-ubyte" in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_mnist_run_end_to_end_with_augmentation(tmp_path):
    write_mnist(tmp_path, n_train=120, n_test=40)
    base = ["data.dataset=mnist", f"data.root={tmp_path}", "model.name=simple-cnn",
            "data.num_clients=3", "data.min_size=1", "cluster.k=1", "rounds=2",
            "client.batch_size=16", "run.threads=1"]
    on = run_federation(load_config(None, base))
    again = run_federation(load_config(None, base))
    off = run_federation(load_config(None, [*base, "data.augment=false"]))
    assert len(on.rounds) == 2 and on.rounds[-1].clusters[0].eval_examples > 0
    assert torch.equal(on.models, again.models)  # augmentation is keyed: reproducible
    assert not torch.equal(on.models, off.models)  # and it really changes training
