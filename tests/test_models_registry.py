"""Every registered model: forward/backward and output shape on its dataset's input shape."""

import pytest
import torch

from fedcluster.config import ModelConfig
from fedcluster.models import MODELS, ModelSpec, build_model
from fedcluster.models.vision import VISION_MODELS

torch.set_num_threads(2)

# the input each model is meant for: (C, H, W), classes
INPUTS = {
    "digits-cnn": ((1, 8, 8), 10), "mlp": ((1, 8, 8), 10),
    "simple-cnn": ((1, 28, 28), 10), "mnist-cnn": ((1, 28, 28), 10),
    "cat-and-dog-conv-net": ((3, 224, 224), 2),
    **{name: ((3, 32, 32), 10) for name in VISION_MODELS},  # CIFAR-10, the reference's use
}
# forward+backward of these takes many seconds on 2 CPU cores: eval shape check by default
HEAVY = {"resnet50", "densenet121", "googlenet", "inception_v3", "vgg16", "vgg19"}
BUILTIN = set(INPUTS)


def test_every_builtin_model_has_an_input_here():
    """A model added to fedcluster itself must be added to INPUTS (and so get tested)."""
    ours = {n for n in MODELS.names() if MODELS.get(n).__module__.startswith("fedcluster.")}
    assert ours == BUILTIN


def _check_train_step(name, shape, classes):
    model = build_model(ModelSpec(shape, classes), ModelConfig(name=name), seed=0)
    model.train()
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, classes)
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 1])).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("name", sorted(BUILTIN - HEAVY))
def test_forward_backward(name):
    shape, classes = INPUTS[name]
    _check_train_step(name, shape, classes)


@pytest.mark.parametrize("name", sorted(HEAVY))
def test_heavy_models_eval_shape(name):
    shape, classes = INPUTS[name]
    model = build_model(ModelSpec(shape, classes), ModelConfig(name=name), seed=0).eval()
    with torch.no_grad():
        assert model(torch.randn(1, *shape)).shape == (1, classes)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HEAVY))
def test_heavy_models_forward_backward(name):
    shape, classes = INPUTS[name]
    _check_train_step(name, shape, classes)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VISION_MODELS))
def test_vision_models_on_large_grayscale_input(name):
    """The stock stem (>= 64 px) with the input conv adapted to 1 channel."""
    shape = (1, 96, 96)
    model = build_model(ModelSpec(shape, 2), ModelConfig(name=name), seed=0).eval()
    with torch.no_grad():
        assert model(torch.randn(1, *shape)).shape == (1, 2)


@pytest.mark.parametrize("name", ["resnet18", "alexnet"])
def test_small_image_stem_keeps_the_feature_map(name):
    """On 1x28x28 (MNIST) the adapted models run; grayscale input conv has 1 channel."""
    model = build_model(ModelSpec((1, 28, 28), 10), ModelConfig(name=name), seed=0).eval()
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 1 and first.kernel_size == (3, 3) and first.stride == (1, 1)
    with torch.no_grad():
        assert model(torch.randn(1, 1, 28, 28)).shape == (1, 10)


def test_resnet18_keeps_stock_stem_for_large_rgb():
    model = build_model(ModelSpec((3, 224, 224), 2), ModelConfig(name="resnet18"), seed=0)
    assert model.conv1.kernel_size == (7, 7) and not isinstance(model.maxpool, torch.nn.Identity)
    assert model.fc.out_features == 2


def test_same_seed_same_weights():
    a = build_model(ModelSpec((3, 32, 32), 10), ModelConfig(name="resnet18"), seed=4)
    b = build_model(ModelSpec((3, 32, 32), 10), ModelConfig(name="resnet18"), seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
