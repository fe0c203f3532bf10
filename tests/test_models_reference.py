"""The reference program's CNNs: exact parameter counts and shapes on the reference inputs."""

import pytest
import torch

from fedcluster.config import ModelConfig
from fedcluster.models import MODELS, ModelSpec, build_model

torch.set_num_threads(1)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("name", "shape", "classes", "params"),
    [
        # conv 1->4 3x3 (40) + conv 4->16 4x4 (1,040) + conv 16->32 3x3 (4,640) + fc 288->10 (2,890)
        ("simple-cnn", (1, 28, 28), 10, 8_610),
        # conv 1->16 5x5 (416) + conv 16->32 5x5 (12,832) + fc 1568->10 (15,690)
        ("mnist-cnn", (1, 28, 28), 10, 28_938),
        # convs 1,216 + 12,832 + 18,496; fc 2304->500 (1,152,500), 500->50 (25,050), 50->2 (102)
        ("cat-and-dog-conv-net", (3, 224, 224), 2, 1_210_196),
    ],
)
def test_reference_parameter_counts(name, shape, classes, params):
    model = build_model(ModelSpec(shape, classes), ModelConfig(name=name), seed=0)
    assert _count(model) == params
    out = model(torch.zeros(2, *shape))
    assert out.shape == (2, classes)


def test_reference_dense_layer_widths():
    """The first dense layer sees exactly the reference's feature counts."""
    widths = {"simple-cnn": ((1, 28, 28), 288), "mnist-cnn": ((1, 28, 28), 1568),
              "cat-and-dog-conv-net": ((3, 224, 224), 2304)}
    for name, (shape, width) in widths.items():
        model = build_model(ModelSpec(shape, 10), ModelConfig(name=name), seed=0)
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
        assert first.in_features == width, name


def test_reference_cnns_adapt_to_other_inputs():
    """mnist-cnn on CIFAR-shaped input: 3 input channels, 32*8*8 features."""
    model = build_model(ModelSpec((3, 32, 32), 7), ModelConfig(name="mnist-cnn"), seed=0)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert first.in_features == 2048
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 7)


def test_reference_cnn_rejects_too_small_input():
    with pytest.raises(ValueError, match="too small"):
        build_model(ModelSpec((3, 16, 16), 2), ModelConfig(name="cat-and-dog-conv-net"), seed=0)


def test_reference_names_registered():
    assert {"simple-cnn", "mnist-cnn", "cat-and-dog-conv-net"} <= set(MODELS.names())


def _reference_order(model: torch.nn.Module) -> torch.nn.Module:
    """A copy with every (MaxPool2d, ReLU) pair put back in the reference's (ReLU, MaxPool2d)."""
    import copy

    ref = copy.deepcopy(model)
    for seq in [m for m in ref.modules() if isinstance(m, torch.nn.Sequential)]:
        layers = list(seq)
        for i in range(len(layers) - 1):
            if isinstance(layers[i], torch.nn.MaxPool2d) and isinstance(layers[i + 1],
                                                                        torch.nn.ReLU):
                seq[i], seq[i + 1] = layers[i + 1], layers[i]
    return ref


@pytest.mark.parametrize(("name", "shape"), [("simple-cnn", (1, 28, 28)),
                                             ("mnist-cnn", (1, 28, 28)),
                                             ("digits-cnn", (1, 8, 8))])
def test_pooling_before_relu_is_the_reference_function_bit_for_bit(name, shape):
    """The shipped CNNs pool before the ReLU; outputs and gradients equal ReLU-then-pool."""
    model = build_model(ModelSpec(shape, 10), ModelConfig(name=name), seed=0)
    ref = _reference_order(model)
    kinds = [type(m).__name__ for m in model.modules()]
    assert "MaxPool2d" in kinds and kinds != [type(m).__name__ for m in ref.modules()]
    x = torch.randn(64, *shape, generator=torch.Generator().manual_seed(1))
    x[:8] = 0.0  # ties in the pooling windows, and exact zeros into the ReLU
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(2))
    outs, grads = [], []
    for m in (model, ref):
        m.zero_grad()
        out = m(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        outs.append(out.detach())
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(grads[0], grads[1])
