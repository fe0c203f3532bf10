"""Batched, keyed data augmentation on image tensors (on whatever device they live).

A dataset declares its recipe as an :class:`Augmentation`; :func:`build_augment`
turns it into ``augment(x, generator) -> x`` applied to each training batch of
normalised images ``[B, C, H, W]``. Every random draw comes from ``generator`` (the
client's, keyed by seed, round and client), so a batch is augmented identically on
every run and every engine.

All geometric ops of a recipe (random resized crop, horizontal flip, rotation,
padded random crop) are composed into one affine map per image and applied with a
single ``grid_sample`` over the batch; uncovered pixels are black (the normalised
value of 0), as with torchvision's PIL transforms. Flips and padded crops alone
move whole pixels, so they are sampled with ``nearest`` and are exact. Colour
jitter (brightness, contrast, saturation, hue) works in pixel space, clamped to
[0, 1], and runs before the geometric ops (they commute up to that clamping); the
hue shift is a rotation of the chroma plane in YIQ space, a close linear stand-in
for torchvision's HSV shift.

The reference's recipes: MNIST rotation ±15° then crop 28 pad 2; CIFAR-10 crop
32 pad 4 and horizontal flip; dog-vs-cat random resized crop, flip, colour jitter
(0.4, 0.4, 0.4, hue 0.1) and rotation ±15°.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Augment", "Augmentation", "affine_params", "build_augment", "color_jitter"]

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Augmentation:
    """A dataset's training augmentation; all fields off means none."""

    rotation: float = 0.0  # max degrees, drawn uniformly in [-rotation, rotation]
    crop_padding: int = 0  # random crop of the original size after padding by this much
    hflip: bool = False  # horizontal flip with probability 1/2
    resized_crop: tuple[float, float] | None = None  # area scale range, aspect 3/4..4/3
    jitter: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # b, c, s, hue

    @property
    def geometric(self) -> bool:
        return bool(self.rotation or self.crop_padding or self.hflip or self.resized_crop)

    @property
    def active(self) -> bool:
        return self.geometric or any(self.jitter)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64) * (hi - lo) + lo


def affine_params(aug: Augmentation, n: int, height: int, width: int,
                  gen: torch.Generator) -> torch.Tensor:
    """Per-image maps ``[n, 2, 3]`` from output to input coordinates (``affine_grid``'s).

    The ops compose in the reference's order: resized crop, flip, rotation, padded crop.
    """
    m = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    if aug.resized_crop:
        area = _uniform(n, aug.resized_crop[0], aug.resized_crop[1], gen)
        # aspect ratio in pixels: w/h in [-1, 1]^2 units is ratio * height / width
        ratio = _uniform(n, math.log(3 / 4), math.log(4 / 3), gen).exp() * (height / width)
        w, h = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
        step = torch.zeros(n, 3, 3, dtype=torch.float64)
        step[:, 0, 0], step[:, 1, 1], step[:, 2, 2] = w, h, 1.0
        step[:, 0, 2] = _uniform(n, -1.0, 1.0, gen) * (1 - w)
        step[:, 1, 2] = _uniform(n, -1.0, 1.0, gen) * (1 - h)
        m = m @ step
    if aug.hflip:
        step = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
        step[:, 0, 0] = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
        m = m @ step
    if aug.rotation:
        angle = _uniform(n, -aug.rotation, aug.rotation, gen) * (math.pi / 180)
        step = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
        aspect = height / width  # rotate in pixels, not in [-1, 1]^2 coordinates
        step[:, 0, 0], step[:, 0, 1] = angle.cos(), -angle.sin() * aspect
        step[:, 1, 0], step[:, 1, 1] = angle.sin() / aspect, angle.cos()
        m = m @ step
    if aug.crop_padding:
        p = aug.crop_padding
        step = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
        step[:, 0, 2] = (torch.randint(0, 2 * p + 1, (n,), generator=gen) - p) * (2 / width)
        step[:, 1, 2] = (torch.randint(0, 2 * p + 1, (n,), generator=gen) - p) * (2 / height)
        m = m @ step
    return m[:, :2]


_GRAY = (0.299, 0.587, 0.114)
_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def color_jitter(p: torch.Tensor, jitter: tuple[float, float, float, float],
                 gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation, hue on pixel-space images in [0, 1]."""
    n, dev, dt = len(p), p.device, p.dtype
    b, c, s, hue = jitter

    def factor(amount: float) -> torch.Tensor:
        return _uniform(n, 1 - amount, 1 + amount, gen).to(dev, dt).view(-1, 1, 1, 1)

    gray_w = torch.tensor(_GRAY, device=dev, dtype=dt).view(1, 3, 1, 1)
    if b:
        p = p * factor(b)
    if c:
        mean = (p * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        p = (p - mean) * factor(c) + mean
    if s:
        gray = (p * gray_w).sum(1, keepdim=True)
        p = (p - gray) * factor(s) + gray
    if hue:
        angle = _uniform(n, -hue, hue, gen) * (2 * math.pi)
        rot = torch.zeros(n, 3, 3, dtype=torch.float64)
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2] = angle.cos(), -angle.sin()
        rot[:, 2, 1], rot[:, 2, 2] = angle.sin(), angle.cos()
        yiq = torch.tensor(_YIQ, dtype=torch.float64)
        m = (torch.linalg.inv(yiq) @ rot @ yiq).to(dev, dt)  # [n, 3, 3]
        p = torch.einsum("nij,njhw->nihw", m, p)
    return p.clamp(0.0, 1.0)


def build_augment(aug: Augmentation | None, mean: tuple[float, ...], std: tuple[float, ...],
                  enabled: bool = True) -> Augment | None:
    """The batch function for ``aug`` on images normalised with ``mean``/``std``, or None."""
    if not enabled or aug is None or not aug.active:
        return None
    exact = not (aug.rotation or aug.resized_crop)  # whole-pixel moves only

    mean, std = mean or (0.0,), std or (1.0,)  # empty: not normalised

    def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        if any(aug.jitter):
            if x.shape[1] != 3:
                raise ValueError(f"colour jitter needs 3-channel images, got {x.shape[1]}")
            x = (color_jitter(x * s + m, aug.jitter, gen) - m) / s
        if aug.geometric:
            theta = affine_params(aug, len(x), x.shape[2], x.shape[3], gen)
            grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
            fill = -m / s  # black, normalised
            x = F.grid_sample(x - fill, grid, mode="nearest" if exact else "bilinear",
                              padding_mode="zeros", align_corners=False) + fill
        return x

    return augment
