"""Image folders: decoding JPEGs once into a cache, errors, and the lazy batch path."""

import numpy as np
import pytest
import torch
from _datafiles import write_jpeg_folder
from PIL import Image

from fedcluster.config import DataConfig
from fedcluster.data import DataError, load_dataset
from fedcluster.data import folders as folders_mod
from fedcluster.data.device import LazyImages, device_images

torch.set_num_threads(1)


def _cfg(root, **kw):
    base = {"dataset": "dog-and-cat", "root": str(root), "image_size": 16, "workers": 0}
    return DataConfig(**{**base, **kw})


def test_dog_and_cat_folder_loads(tmp_path):
    write_jpeg_folder(tmp_path / "dog-and-cat", n_train=3, n_val=2)
    ds = load_dataset(_cfg(tmp_path))
    assert ds.train_x.shape == (6, 3, 16, 16) and ds.train_x.dtype == torch.uint8
    assert ds.test_x.shape == (4, 3, 16, 16)
    assert ds.train_y.tolist() == [0, 0, 0, 1, 1, 1] and ds.num_classes == 2
    # class 0 ("cat") images are tinted red, class 1 ("dog") green: the decode kept that
    red = ds.train_x[:3, 0].float().mean()
    green = ds.train_x[:3, 1].float().mean()
    assert red > green + 100
    assert ds.augmentation.resized_crop == (0.08, 1.0) and ds.augmentation.jitter[3] == 0.1


def test_second_load_uses_the_cache(tmp_path, monkeypatch):
    write_jpeg_folder(tmp_path / "dog-and-cat")
    first = load_dataset(_cfg(tmp_path))

    def no_decoding(self, i):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folders_mod._Decode, "__getitem__", no_decoding)
    second = load_dataset(_cfg(tmp_path))
    assert torch.equal(first.train_x, second.train_x)
    assert torch.equal(first.test_y, second.test_y)


def test_changed_tree_is_decoded_again(tmp_path):
    folder = tmp_path / "dog-and-cat"
    write_jpeg_folder(folder)
    load_dataset(_cfg(tmp_path))
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(folder / "train/cat/new.jpg")
    ds = load_dataset(_cfg(tmp_path))
    assert len(ds.train_x) == 9
    assert len(list((folder / ".fedcluster-cache").glob("train-16-*.npy"))) == 2


def test_corrupt_jpeg_is_named(tmp_path):
    folder = tmp_path / "dog-and-cat"
    write_jpeg_folder(folder)
    (folder / "train/dog/1.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match=r"1 image\(s\) could not be decoded") as e:
        load_dataset(_cfg(tmp_path))
    assert str(folder / "train/dog/1.jpg") in str(e.value)
    assert not list((folder / ".fedcluster-cache").glob("*.npy"))  # no half-written cache


def test_decoding_with_worker_processes(tmp_path):
    write_jpeg_folder(tmp_path / "dog-and-cat", n_train=5)
    a = load_dataset(_cfg(tmp_path, workers=2, image_size=12))
    write_jpeg_folder(tmp_path / "copy" / "dog-and-cat", n_train=5)
    b = load_dataset(_cfg(tmp_path / "copy", workers=0, image_size=12))
    assert torch.equal(a.train_x, b.train_x)


def test_missing_folder_says_what_is_expected(tmp_path):
    with pytest.raises(DataError) as e:
        load_dataset(_cfg(tmp_path))
    msg = str(e.value)
    assert str(tmp_path / "dog-and-cat" / "train") in msg
    assert "train/<class>/*.jpg" in msg


def test_classes_must_match(tmp_path):
    folder = tmp_path / "pets"
    write_jpeg_folder(folder)
    (folder / "val/dog").rename(folder / "val/bird")
    with pytest.raises(DataError, match="same class directories"):
        load_dataset(_cfg(tmp_path, dataset="image-folder", folder="pets"))


def test_image_folder_needs_a_folder(tmp_path):
    with pytest.raises(DataError, match="needs data.folder"):
        load_dataset(_cfg(tmp_path, dataset="image-folder"))


def test_image_folder_with_test_split_and_three_classes(tmp_path):
    folder = tmp_path / "shapes"
    write_jpeg_folder(folder, classes=("a", "b", "c"), n_train=2, n_val=1)
    (folder / "val").rename(folder / "test")
    ds = load_dataset(_cfg(tmp_path, dataset="image-folder", folder="shapes"))
    assert ds.num_classes == 3 and ds.test_y.tolist() == [0, 1, 2]


def test_lazy_images_equal_resident_ones(tmp_path):
    write_jpeg_folder(tmp_path / "dog-and-cat")
    ds = load_dataset(_cfg(tmp_path))
    resident, _ = device_images(ds, torch.device("cpu"))
    lazy, lazy_test = device_images(ds, torch.device("cpu"), resident_bytes=0)
    assert isinstance(lazy, LazyImages) and isinstance(lazy_test, LazyImages)
    idx = torch.tensor([5, 0, 3])
    assert torch.equal(lazy[idx], resident[idx])
    assert lazy.device == torch.device("cpu") and len(lazy) == 8
