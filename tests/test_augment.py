"""Batched, keyed augmentation: deterministic per key, really changes images, exact ops."""

import math

import pytest
import torch

from fedcluster.data.augment import Augmentation, affine_params, build_augment, color_jitter
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


def _one(aug, x, seed=0, mean=0.0, std=1.0):
    c = x.shape[1]
    return build_augment(aug, (mean,) * c, (std,) * c)(x, torch.Generator().manual_seed(seed))


def test_padded_crop_is_an_exact_window_of_the_padded_image():
    x = torch.arange(4 * 1 * 6 * 6, dtype=torch.float32).view(4, 1, 6, 6) + 1
    out = _one(Augmentation(crop_padding=2), x, seed=3, mean=0.7, std=0.1)  # black = -7
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), value=-7.0)
    offsets = set()
    for b in range(4):
        hits = [(i, j) for i in range(5) for j in range(5)
                if torch.equal(out[b], padded[b, :, i:i + 6, j:j + 6])]
        assert hits, f"image {b} is not a window of the padded image"
        offsets.add(hits[0])
    assert len(offsets) > 1  # different images, different places


def test_hflip_flips_about_half_exactly():
    x = _batch(3, 8, n=200)
    out = _one(Augmentation(hflip=True), x)
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(200)]
    kept = [torch.equal(out[i], x[i]) for i in range(200)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 70 < sum(flipped) < 130


def test_rotation_fills_black_and_keeps_the_centre():
    x = torch.ones(4, 1, 29, 29)
    out = _one(Augmentation(rotation=15.0), x, seed=1, mean=0.4, std=1.0)  # black = -0.4
    assert torch.allclose(out[:, :, 14, 14], torch.ones(4, 1))  # the centre stays
    corners = out[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners < 0.99).any()  # some corner rotated out: partly black
    assert out.min() >= -0.4 - 1e-5 and out.max() <= 1 + 1e-5


def test_rotation_angles_stay_within_bounds():
    """An impulse off-centre moves along a circle by at most the max angle."""
    x = torch.zeros(64, 1, 41, 41)
    x[:, :, 20, 35] = 1.0  # 15 px right of the centre
    out = _one(Augmentation(rotation=15.0), x)
    ys, xs = torch.meshgrid(torch.arange(41.0), torch.arange(41.0), indexing="ij")
    w = out[:, 0].clamp(min=0)
    cy = (w * ys).sum((1, 2)) / w.sum((1, 2))
    cx = (w * xs).sum((1, 2)) / w.sum((1, 2))
    angles = torch.atan2(cy - 20, cx - 20).abs() * 180 / math.pi
    assert angles.max() <= 16.0 and angles.max() > 5.0


def test_resized_crop_zooms_in():
    """A box of a quarter of the area (sides ~1/2) magnified 2x: a ramp gets ~half as steep."""
    ramp = torch.linspace(0, 1, 64).view(1, 1, 1, 64).expand(8, 1, 64, 64).contiguous()
    out = _one(Augmentation(resized_crop=(0.25, 0.25)), ramp)
    slope = (out[:, 0, 32, 40] - out[:, 0, 32, 24]) / 16
    base = 1 / 63
    assert torch.all(slope > 0.4 * base) and torch.all(slope < 0.6 * base)


def test_composite_matches_reference_order():
    """MNIST's rotation then crop: the crop moves the rotated image by whole pixels."""
    x = _batch(1, 28, n=16)
    aug = Augmentation(rotation=15.0, crop_padding=2)
    theta = affine_params(aug, 16, 28, 28, torch.Generator().manual_seed(5))
    rot = theta[:, :, :2]
    assert torch.allclose(torch.linalg.det(rot), torch.ones(16, dtype=rot.dtype))  # pure rotation
    shift = torch.linalg.solve(rot, theta[:, :, 2:]).squeeze(-1) * 28 / 2  # pixels, pre-rotation
    assert torch.allclose(shift, shift.round(), atol=1e-9) and shift.round().abs().max() <= 2
    assert _one(aug, x).shape == x.shape


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


def test_rotation_is_a_rotation_in_pixels_on_non_square_images():
    theta = affine_params(Augmentation(rotation=15.0), 6, 20, 60, torch.Generator().manual_seed(0))
    to_pixels = torch.diag(torch.tensor([30.0, 10.0], dtype=torch.float64))
    rot = to_pixels @ theta[:, :, :2] @ torch.linalg.inv(to_pixels)
    eye = torch.eye(2, dtype=torch.float64).expand(6, 2, 2)
    assert torch.allclose(rot @ rot.transpose(1, 2), eye, atol=1e-12)
