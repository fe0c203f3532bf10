"""torchvision's classification models, adapted to the dataset.

Each builder starts from torchvision's architecture (random weights, the right
number of classes), replaces the first convolution to take the dataset's input
channels and, for small images (shorter side < 64 px: MNIST, CIFAR-10), swaps the
stem for a small-image one so the feature map does not collapse: the first
convolution becomes 3x3 stride 1 and the first max-pool(s) are dropped (the usual
CIFAR variants); VGG and AlexNet pool to 1x1 before a narrower first dense layer.
Stock ImageNet weights (``model.pretrained = true``) fit only the unadapted
layers; :mod:`.pretrained` loads what matches and reports the rest.

torchvision is imported when a model is built, not with this module: importing it
costs over a second, which a run of a small model should not pay.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from torch import nn

from ..config import ModelConfig
from .spec import ModelSpec

__all__ = ["SMALL_IMAGE", "VISION_MODELS", "is_small"]

SMALL_IMAGE = 64  # inputs with a shorter side below this get the small-image stem


def _tvm() -> ModuleType:
    from torchvision import models

    return models


def is_small(spec: ModelSpec) -> bool:
    return min(spec.input_shape[1:]) < SMALL_IMAGE


def _conv_like(old: nn.Conv2d, channels: int, small: bool) -> nn.Conv2d:
    """``old`` itself when it fits, else a fresh conv for ``channels`` (3x3/1 when small)."""
    if not small and channels == old.in_channels:
        return old
    if small:
        return nn.Conv2d(channels, old.out_channels, 3, 1, 1, bias=old.bias is not None)
    return nn.Conv2d(channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                     bias=old.bias is not None)


def _resnet(name: str) -> Callable[[ModelSpec, ModelConfig], nn.Module]:
    def build(spec: ModelSpec, cfg: ModelConfig) -> nn.Module:
        m = getattr(_tvm(), name)(weights=None, num_classes=spec.num_classes)
        small = is_small(spec)
        m.conv1 = _conv_like(m.conv1, spec.input_shape[0], small)
        if small:
            m.maxpool = nn.Identity()
        return m

    build.__doc__ = f"torchvision {name}, adapted (small-image stem below 64 px)."
    return build


def densenet121(spec: ModelSpec, cfg: ModelConfig) -> nn.Module:
    """torchvision densenet121, adapted (3x3 stem without pooling below 64 px)."""
    m = _tvm().densenet121(weights=None, num_classes=spec.num_classes)
    small = is_small(spec)
    m.features.conv0 = _conv_like(m.features.conv0, spec.input_shape[0], small)
    if small:
        m.features.pool0 = nn.Identity()
    return m


def alexnet(spec: ModelSpec, cfg: ModelConfig) -> nn.Module:
    """torchvision alexnet, adapted (3x3 first conv, 1x1 pooling, 256->4096 below 64 px)."""
    m = _tvm().alexnet(weights=None, num_classes=spec.num_classes)
    small = is_small(spec)
    m.features[0] = _conv_like(m.features[0], spec.input_shape[0], small)
    if small:
        m.avgpool = nn.AdaptiveAvgPool2d(1)
        m.classifier[1] = nn.Linear(256, m.classifier[1].out_features)
    return m


def _vgg(name: str) -> Callable[[ModelSpec, ModelConfig], nn.Module]:
    def build(spec: ModelSpec, cfg: ModelConfig) -> nn.Module:
        m = getattr(_tvm(), name)(weights=None, num_classes=spec.num_classes)
        m.features[0] = _conv_like(m.features[0], spec.input_shape[0], small=False)
        if is_small(spec):
            m.features[-1] = nn.Identity()  # four pools: 32 px -> 2x2, 28 px -> 1x1
            m.avgpool = nn.AdaptiveAvgPool2d(1)
            m.classifier[0] = nn.Linear(512, m.classifier[0].out_features)
        return m

    build.__doc__ = (f"torchvision {name}, adapted (last pool dropped, 1x1 "
                     "pooling, 512->4096 below 64 px).")
    return build


def googlenet(spec: ModelSpec, cfg: ModelConfig) -> nn.Module:
    """torchvision googlenet without auxiliary heads, adapted (small-image stem below 64 px)."""
    from torchvision.models.googlenet import BasicConv2d as GoogLeNetConv

    m = _tvm().googlenet(weights=None, num_classes=spec.num_classes, aux_logits=False,
                      init_weights=True, transform_input=False)
    c = spec.input_shape[0]
    if is_small(spec):
        m.conv1 = GoogLeNetConv(c, 64, kernel_size=3, stride=1, padding=1)
        m.maxpool1 = nn.Identity()  # 32 px: inception blocks at 16, 8, 4 px
    elif c != 3:
        m.conv1 = GoogLeNetConv(c, 64, kernel_size=7, stride=2, padding=3)
    return m


def inception_v3(spec: ModelSpec, cfg: ModelConfig) -> nn.Module:
    """torchvision inception_v3 without the auxiliary head, adapted (small stem below 64 px).

    The stock stem needs inputs of at least 75 px.
    """
    from torchvision.models.inception import BasicConv2d as InceptionConv

    m = _tvm().inception_v3(weights=None, num_classes=spec.num_classes, aux_logits=False,
                         init_weights=True, transform_input=False)
    c = spec.input_shape[0]
    if is_small(spec):
        m.Conv2d_1a_3x3 = InceptionConv(c, 32, kernel_size=3, stride=1, padding=1)
        m.maxpool1 = nn.Identity()  # 32 px: mixed blocks at 13, 6, 2 px
    else:
        if min(spec.input_shape[1:]) < 75:
            raise ValueError(f"inception_v3 needs inputs of at least 75 px, got {spec.input_shape}")
        if c != 3:
            m.Conv2d_1a_3x3 = InceptionConv(c, 32, kernel_size=3, stride=2)
    return m


VISION_MODELS: dict[str, Callable[[ModelSpec, ModelConfig], nn.Module]] = {
    "resnet18": _resnet("resnet18"),
    "resnet50": _resnet("resnet50"),
    "densenet121": densenet121,
    "alexnet": alexnet,
    "vgg16": _vgg("vgg16"),
    "vgg19": _vgg("vgg19"),
    "googlenet": googlenet,
    "inception_v3": inception_v3,
}
