"""MNIST and CIFAR-10 from tiny files in torchvision's real layouts."""

import io
import multiprocessing as mp
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _datafiles import write_cifar, write_mnist

from fedcluster.config import DataConfig
from fedcluster.data import DATASETS, DataError, load_dataset
from fedcluster.data.files import run_once
from fedcluster.data.torchvision_sources import _ArraysOnly


def test_mnist_loads_idx_files(tmp_path):
    arrays = write_mnist(tmp_path, n_train=30, n_test=10)
    ds = load_dataset(DataConfig(dataset="mnist", root=str(tmp_path)))
    assert ds.train_x.shape == (30, 1, 28, 28) and ds.train_x.dtype == torch.uint8
    assert ds.test_x.shape == (10, 1, 28, 28)
    assert ds.train_y.dtype == torch.int64
    np.testing.assert_array_equal(ds.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.test_y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert ds.num_classes == 10 and ds.mean == (0.1307,)
    assert ds.augmentation.rotation == 15.0 and ds.augmentation.crop_padding == 2


def test_mnist_gz_files_are_extracted(tmp_path):
    arrays = write_mnist(tmp_path, n_train=20, n_test=10, gz=True)
    ds = load_dataset(DataConfig(dataset="mnist", root=str(tmp_path)))
    np.testing.assert_array_equal(ds.train_y.numpy(), arrays["train-labels-idx1-ubyte"])
    assert (tmp_path / "mnist/MNIST/raw/train-images-idx3-ubyte").is_file()


def test_mnist_missing_files_say_which_and_how(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "mnist/MNIST/raw/t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(dataset="mnist", root=str(tmp_path)))
    msg = str(e.value)
    assert "1 of 4 expected files are missing" in msg
    assert str(tmp_path / "mnist/MNIST/raw/t10k-labels-idx1-ubyte") in msg
    assert "data.download = true" in msg and "ossci-datasets" in msg


def test_mnist_corrupt_file_is_named(tmp_path):
    write_mnist(tmp_path)
    bad = tmp_path / "mnist/MNIST/raw/train-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:1000])  # truncated
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*corrupt or truncated"):
        load_dataset(DataConfig(dataset="mnist", root=str(tmp_path)))


def test_mnist_label_count_mismatch(tmp_path):
    write_mnist(tmp_path, n_train=20)
    write_mnist(tmp_path / "other", n_train=10)
    src = tmp_path / "other/mnist/MNIST/raw/train-labels-idx1-ubyte"
    (tmp_path / "mnist/MNIST/raw/train-labels-idx1-ubyte").write_bytes(src.read_bytes())
    with pytest.raises(DataError, match="20, 28, 28.*10 labels"):
        load_dataset(DataConfig(dataset="mnist", root=str(tmp_path)))


def test_cifar_loads_python_batches(tmp_path):
    arrays = write_cifar(tmp_path, per_batch=6)
    ds = load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path), verify=False))
    assert ds.train_x.shape == (30, 3, 32, 32) and ds.test_x.shape == (6, 3, 32, 32)
    np.testing.assert_array_equal(ds.train_x[:6].reshape(6, -1).numpy(), arrays["data_batch_1"])
    np.testing.assert_array_equal(ds.test_y.numpy(), arrays["test_batch_labels"])
    assert ds.augmentation.hflip and ds.augmentation.crop_padding == 4
    assert DATASETS.get("cifar") is DATASETS.get("cifar10")


def test_cifar_checksums_are_verified(tmp_path):
    write_cifar(tmp_path)
    with pytest.raises(DataError, match="checksum mismatch.*data_batch_1.*data.verify = false"):
        load_dataset(DataConfig(dataset="cifar", root=str(tmp_path)))


def test_cifar_missing_files(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset(DataConfig(dataset="cifar", root=str(tmp_path), verify=False))
    msg = str(e.value)
    assert "6 of 6 expected files are missing" in msg
    assert str(tmp_path / "cifar-10/cifar-10-batches-py/data_batch_3") in msg
    assert "cifar-10-python.tar.gz" in msg


def test_cifar_corrupt_batch(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10/cifar-10-batches-py/test_batch").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="test_batch is not a CIFAR-10 python batch"):
        load_dataset(DataConfig(dataset="cifar", root=str(tmp_path), verify=False))


def test_cifar_reader_refuses_arbitrary_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    buf = io.BytesIO()
    pickle.dump({"data": Evil(), "labels": []}, buf, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load .*print"):
        _ArraysOnly(io.BytesIO(buf.getvalue()), encoding="latin1").load()


def _prepare_worker(directory: str, log: str) -> None:
    def fetch() -> None:
        with open(log, "a") as f:
            f.write("fetch\n")
        time.sleep(0.5)
        (Path(directory) / "done").write_text("ok")

    run_once(Path(directory), lambda: (Path(directory) / "done").exists(), fetch)


def test_download_runs_once_across_processes(tmp_path):
    """Four processes start together; exactly one prepares, the others wait and reuse it."""
    log = tmp_path / "log.txt"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_prepare_worker, args=(str(tmp_path / "d"), str(log)))
             for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert log.read_text() == "fetch\n"
    assert (tmp_path / "d/done").read_text() == "ok"
