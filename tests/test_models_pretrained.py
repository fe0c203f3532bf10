"""model.pretrained: local weights by name and shape, the report, and the offline message."""

import logging

import pytest
import torch
from safetensors.torch import save_file

from fedcluster.config import ConfigError, ModelConfig
from fedcluster.models import ModelSpec, build_model
from fedcluster.models.pretrained import load_matching, read_weights

torch.set_num_threads(1)
MNIST = ModelSpec((1, 28, 28), 10)


def _params(m):
    return dict(m.state_dict())


def test_safetensors_file_loads_exactly(tmp_path):
    src = build_model(MNIST, ModelConfig(name="mnist-cnn"), seed=1)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()},
              str(tmp_path / "w.safetensors"))
    cfg = ModelConfig(name="mnist-cnn", pretrained=str(tmp_path / "w.safetensors"))
    got = build_model(MNIST, cfg, seed=2)
    for k, v in _params(src).items():
        assert torch.equal(got.state_dict()[k], v), k


def test_torch_save_file_with_wrapper_and_prefix(tmp_path):
    src = build_model(MNIST, ModelConfig(name="mnist-cnn"), seed=1)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}
    torch.save(wrapped, tmp_path / "w.pth")
    got = build_model(MNIST, ModelConfig(name="mnist-cnn", pretrained=str(tmp_path / "w.pth")),
                      seed=2)
    assert all(torch.equal(got.state_dict()[k], v) for k, v in src.state_dict().items())


def test_mismatched_shapes_are_skipped_and_reported(tmp_path, caplog):
    """Weights for 10 classes into a 2-class model: all but the classifier load."""
    src = build_model(MNIST, ModelConfig(name="mnist-cnn"), seed=1)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    fresh = build_model(ModelSpec((1, 28, 28), 2), ModelConfig(name="mnist-cnn"), seed=2)
    with caplog.at_level(logging.WARNING, logger="fedcluster"):
        got = build_model(ModelSpec((1, 28, 28), 2),
                          ModelConfig(name="mnist-cnn", pretrained=str(tmp_path / "w.pt")), seed=2)
    assert torch.equal(got[0][0].weight, src[0][0].weight)  # conv loaded
    assert torch.equal(got[1].weight, fresh[1].weight)  # classifier kept fresh
    assert "1.weight (10, 1568) vs model (2, 1568)" in caplog.text


def test_reference_style_names_load_by_position():
    """The reference's mnist-cnn names its layers conv1.0, conv2.0, out; shapes line up."""
    src = build_model(MNIST, ModelConfig(name="mnist-cnn"), seed=1)
    names = ["conv1.0.weight", "conv1.0.bias", "conv2.0.weight", "conv2.0.bias", "out.weight",
             "out.bias"]
    tensors = dict(zip(names, src.state_dict().values(), strict=True))
    target = build_model(MNIST, ModelConfig(name="mnist-cnn"), seed=2)
    report = load_matching(target, tensors)
    assert report.by_position and len(report.loaded) == 6
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(),
                                                 src.state_dict().values(), strict=True))


def test_nothing_matching_is_an_error(tmp_path):
    torch.save({"x": torch.zeros(3)}, tmp_path / "w.pt")
    with pytest.raises(ConfigError, match="none of the 1 tensors"):
        build_model(MNIST, ModelConfig(name="mnist-cnn", pretrained=str(tmp_path / "w.pt")), 0)


def test_unreadable_file_is_an_error(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read weights"):
        read_weights(tmp_path / "w.pt")
    with pytest.raises(ConfigError, match="file not found"):
        read_weights(tmp_path / "missing.pt")


class Thing:
    """Any non-tensor object: weights_only loading must refuse it."""


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"w": Thing()}, tmp_path / "evil.pt")
    with pytest.raises(ConfigError, match="cannot read weights"):
        read_weights(tmp_path / "evil.pt")


def test_pretrained_true_offline_says_to_supply_weights(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ConfigError) as e:
        build_model(ModelSpec((3, 32, 32), 10), ModelConfig(name="resnet18", pretrained=True), 0)
    msg = str(e.value)
    assert "could not be downloaded" in msg and "resnet18" in msg
    assert "model.pretrained = \"path/to/that/file\"" in msg and "https://" in msg


def test_pretrained_true_for_a_model_without_stock_weights():
    with pytest.raises(ConfigError, match="has no stock weights; give a file"):
        build_model(MNIST, ModelConfig(name="mnist-cnn", pretrained=True), 0)
