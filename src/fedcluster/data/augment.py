"""Batched, keyed data augmentation on image tensors (on whatever device they live).

A dataset declares its recipe as an :class:`Augmentation`; :func:`build_augment`
turns it into ``augment(x, generator) -> x`` applied to each training batch of
normalised images ``[B, C, H, W]``. Every random draw comes from ``generator`` (the
client's, keyed by seed, round and client), so a batch is augmented identically on
every run and every engine. Geometric ops fill uncovered pixels with black (the
normalised value of 0), as torchvision's PIL transforms do; colour ops work in
pixel space and clamp to [0, 1].

The reference's recipes: MNIST rotation ±15° then crop 28 pad 2; CIFAR-10 crop
32 pad 4 and horizontal flip; dog-vs-cat random resized crop, flip, colour jitter
(0.4, 0.4, 0.4, hue 0.1) and rotation ±15°. The hue shift is a rotation of the
chroma plane in YIQ space, a close linear stand-in for torchvision's HSV shift.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Augment", "Augmentation", "build_augment"]

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
    def active(self) -> bool:
        return bool(self.rotation or self.crop_padding or self.hflip or self.resized_crop
                    or any(self.jitter))


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device: torch.device
             ) -> torch.Tensor:
    return (torch.rand(n, generator=gen) * (hi - lo) + lo).to(device)


def _sample_affine(x: torch.Tensor, theta: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False) + fill


def random_rotation(x: torch.Tensor, degrees: float, fill: torch.Tensor,
                    gen: torch.Generator) -> torch.Tensor:
    angle = _uniform(len(x), -degrees, degrees, gen, x.device) * (math.pi / 180)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    return _sample_affine(x, theta, fill)


def random_resized_crop(x: torch.Tensor, scale: tuple[float, float], fill: torch.Tensor,
                        gen: torch.Generator) -> torch.Tensor:
    """A box of area fraction ~U(scale), aspect ~logU(3/4, 4/3), resized to the full size."""
    n = len(x)
    area = _uniform(n, scale[0], scale[1], gen, x.device)
    log_ratio = _uniform(n, math.log(3 / 4), math.log(4 / 3), gen, x.device)
    w = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
    h = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    cx = (_uniform(n, -1.0, 1.0, gen, x.device)) * (1 - w)
    cy = (_uniform(n, -1.0, 1.0, gen, x.device)) * (1 - h)
    zero = torch.zeros_like(w)
    theta = torch.stack([torch.stack([w, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1)
    return _sample_affine(x, theta, fill)


def random_crop(x: torch.Tensor, padding: int, fill: torch.Tensor,
                gen: torch.Generator) -> torch.Tensor:
    """Pad by ``padding`` with ``fill`` and cut a window of the original size at a random place."""
    b, _, h, w = x.shape
    padded = F.pad(x - fill, (padding,) * 4) + fill
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=gen).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=gen).to(x.device)
    rows = oy[:, None] + torch.arange(h, device=x.device)
    cols = ox[:, None] + torch.arange(w, device=x.device)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def random_hflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = (torch.rand(len(x), generator=gen) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


_GRAY = (0.299, 0.587, 0.114)


def color_jitter(p: torch.Tensor, jitter: tuple[float, float, float, float],
                 gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation, hue on pixel-space images in [0, 1]."""
    n, dev = len(p), p.device
    b, c, s, hue = jitter
    gray_w = torch.tensor(_GRAY, device=dev, dtype=p.dtype).view(1, 3, 1, 1)
    if b:
        p = p * _uniform(n, 1 - b, 1 + b, gen, dev).view(-1, 1, 1, 1)
    if c:
        mean = (p * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        p = (p - mean) * _uniform(n, 1 - c, 1 + c, gen, dev).view(-1, 1, 1, 1) + mean
    if s:
        gray = (p * gray_w).sum(1, keepdim=True)
        p = (p - gray) * _uniform(n, 1 - s, 1 + s, gen, dev).view(-1, 1, 1, 1) + gray
    if hue:
        angle = _uniform(n, -hue, hue, gen, dev) * (2 * math.pi)
        to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                               [0.211, -0.523, 0.312]], device=dev, dtype=p.dtype)
        cos, sin = angle.cos(), angle.sin()
        rot = torch.zeros(n, 3, 3, device=dev, dtype=p.dtype)
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
        m = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # [n, 3, 3]
        p = torch.einsum("nij,njhw->nihw", m, p)
    return p.clamp(0.0, 1.0)


def build_augment(aug: Augmentation | None, mean: tuple[float, ...], std: tuple[float, ...],
                  enabled: bool = True) -> Augment | None:
    """The batch function for ``aug`` on images normalised with ``mean``/``std``, or None."""
    if not enabled or aug is None or not aug.active:
        return None

    def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        fill = -m / s  # black, normalised
        if aug.resized_crop:
            x = random_resized_crop(x, aug.resized_crop, fill, gen)
        if aug.hflip:
            x = random_hflip(x, gen)
        if any(aug.jitter):
            if x.shape[1] != 3:
                raise ValueError(f"colour jitter needs 3-channel images, got {x.shape[1]}")
            x = (color_jitter(x * s + m, aug.jitter, gen) - m) / s
        if aug.rotation:
            x = random_rotation(x, aug.rotation, fill, gen)
        if aug.crop_padding:
            x = random_crop(x, aug.crop_padding, fill, gen)
        return x

    return augment
