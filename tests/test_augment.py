"""Batched, keyed augmentation: deterministic per key, really changes images, exact ops."""

import math

import pytest
import torch

from fedcluster.data.augment import (
    Augmentation,
    build_augment,
    color_jitter,
    random_crop,
    random_hflip,
    random_rotation,
)
from fedcluster.rng import CLIENT, torch_gen

torch.set_num_threads(1)

MNIST = Augmentation(rotation=15.0, crop_padding=2)
CIFAR = Augmentation(crop_padding=4, hflip=True)
FOLDER = Augmentation(rotation=15.0, hflip=True, resized_crop=(0.08, 1.0),
                      jitter=(0.4, 0.4, 0.4, 0.1))


def _batch(c=1, size=28, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, size, size, generator=g)


@pytest.mark.parametrize(("aug", "c", "size"), [(MNIST, 1, 28), (CIFAR, 3, 32), (FOLDER, 3, 24)])
def test_same_key_same_result_other_key_differs(aug, c, size):
    mean, std = (0.5,) * c, (0.25,) * c
    fn = build_augment(aug, mean, std)
    x = _batch(c, size)
    a = fn(x, torch_gen(0, CLIENT, 1, 3))
    b = fn(x, torch_gen(0, CLIENT, 1, 3))
    other = fn(x, torch_gen(0, CLIENT, 1, 4))
    assert a.shape == x.shape
    assert torch.equal(a, b)
    assert not torch.equal(a, other)
    assert not torch.equal(a, x)  # it changes images
    # most images differ from their input, not just a few
    changed = (a - x).flatten(1).abs().amax(1) > 1e-3
    assert changed.float().mean() >= 0.75


def test_switched_off_or_empty_gives_none():
    assert build_augment(MNIST, (0.1,), (0.3,), enabled=False) is None
    assert build_augment(Augmentation(), (0.1,), (0.3,)) is None
    assert build_augment(None, (0.1,), (0.3,)) is None


def test_random_crop_is_a_window_of_the_padded_image():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    fill = torch.full((1, 1, 1, 1), -7.0)
    out = random_crop(x, 2, fill, torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-7.0)
    for b in range(2):
        windows = [padded[b, :, i:i + 6, j:j + 6] for i in range(5) for j in range(5)]
        assert any(torch.equal(out[b], w) for w in windows)
    assert set(out.unique().tolist()) <= set(padded.unique().tolist())


def test_hflip_flips_about_half_exactly():
    x = _batch(3, 8, n=200)
    out = random_hflip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(200)]
    kept = [torch.equal(out[i], x[i]) for i in range(200)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 70 < sum(flipped) < 130


def test_rotation_fills_black_and_keeps_the_centre():
    x = torch.ones(4, 1, 29, 29)
    fill = torch.full((1, 1, 1, 1), -0.4)
    out = random_rotation(x, 15.0, fill, torch.Generator().manual_seed(1))
    assert torch.allclose(out[:, :, 14, 14], torch.ones(4, 1))  # the centre stays
    corners = out[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners < 0.99).any()  # some corner rotated out: partly black
    assert out.min() >= -0.4 - 1e-5 and out.max() <= 1 + 1e-5


def test_rotation_angles_stay_within_bounds():
    """An impulse off-centre moves along a circle by at most the max angle."""
    x = torch.zeros(64, 1, 41, 41)
    x[:, :, 20, 35] = 1.0  # 15 px right of the centre
    out = random_rotation(x, 15.0, torch.zeros(1, 1, 1, 1), torch.Generator().manual_seed(0))
    ys, xs = torch.meshgrid(torch.arange(41.0), torch.arange(41.0), indexing="ij")
    w = out[:, 0].clamp(min=0)
    cy = (w * ys).sum((1, 2)) / w.sum((1, 2))
    cx = (w * xs).sum((1, 2)) / w.sum((1, 2))
    angles = torch.atan2(cy - 20, cx - 20).abs() * 180 / math.pi
    assert angles.max() <= 16.0 and angles.max() > 5.0


def test_color_jitter_stays_in_pixel_range_and_varies():
    p = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = color_jitter(p, (0.4, 0.4, 0.4, 0.1), torch.Generator().manual_seed(0))
    assert out.min() >= 0 and out.max() <= 1
    means = out.mean((1, 2, 3))
    assert means.std() > 0.01


def test_jitter_only_on_three_channels():
    fn = build_augment(Augmentation(jitter=(0.4, 0, 0, 0)), (0.5,), (0.5,))
    with pytest.raises(ValueError, match="3-channel"):
        fn(_batch(1, 8), torch.Generator().manual_seed(0))
