"""Flat optimisers against torch.optim, and flat gradients as parameter views."""

import pytest
import torch
from torch import nn

from fedcluster.config import ClientConfig
from fedcluster.fl.flat import FlatModel
from fedcluster.fl.optim import FlatOptimizer

CONFIGS = [
    ClientConfig(optimizer="sgd", lr=0.1),
    ClientConfig(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=0.01),
    ClientConfig(optimizer="adam", lr=0.01),
    ClientConfig(optimizer="adam", lr=0.003, weight_decay=0.001),
]


def _torch_opt(cfg, params):
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.optimizer}-m{c.momentum}")
def test_flat_optimizer_follows_torch_optim(cfg):
    g = torch.Generator().manual_seed(0)
    p = torch.randn(40, generator=g)
    q = p.clone().requires_grad_(True)
    ref = _torch_opt(cfg, [q])
    opt = FlatOptimizer(cfg, p)
    for _ in range(6):
        grad = torch.randn(40, generator=g)
        q.grad = grad.clone()
        ref.step()
        opt.step(p, grad.clone())
    torch.testing.assert_close(p, q.detach(), rtol=1e-6, atol=1e-7)
    assert not torch.equal(p, q.detach() * 0)  # it moved


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.optimizer}-m{c.momentum}")
def test_stacked_rows_step_like_single_clients_and_finished_rows_stay(cfg):
    g = torch.Generator().manual_seed(1)
    steps = [4, 2, 0]  # ordered most first, as the vmap engine stacks them
    stack = torch.randn(3, 25, generator=g)
    grads = torch.randn(4, 3, 25, generator=g)
    expected = []
    for j, n in enumerate(steps):
        p = stack[j].clone()
        single = FlatOptimizer(cfg, p)
        for s in range(n):
            single.step(p, grads[s, j].clone())
        expected.append(p)
    opt = FlatOptimizer(cfg, stack)
    for s in range(max(steps)):
        rows = sum(n > s for n in steps)
        opt.step(stack[:rows], grads[s, :rows].clone(), rows)
    torch.testing.assert_close(stack, torch.stack(expected), rtol=1e-6, atol=1e-7)


def test_reset_forgets_momentum():
    cfg = ClientConfig(optimizer="sgd", lr=1.0, momentum=0.5)
    p = torch.zeros(3)
    opt = FlatOptimizer(cfg, p)
    opt.step(p, torch.ones(3))
    opt.reset()
    p.zero_()
    opt.step(p, torch.ones(3))
    assert torch.equal(p, -torch.ones(3))  # no momentum carried over


def test_attach_grad_makes_parameter_grads_views_of_one_flat_vector():
    torch.manual_seed(0)
    model = FlatModel(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))
    grad = model.attach_grad()
    assert grad.numel() == model.num_params == 4 * 3 + 3 + 3 * 2 + 2
    x = torch.randn(5, 4)
    for _ in range(2):  # accumulation stays in place across zero_/backward cycles
        grad.zero_()
        model.module(x).square().sum().backward()
    expected = torch.cat([p.grad.reshape(-1) for p in model.module.parameters()])
    fresh = torch.autograd.grad(model.module(x).square().sum(), list(model.module.parameters()))
    torch.testing.assert_close(grad, torch.cat([f.reshape(-1) for f in fresh]))
    assert torch.equal(grad, expected)
    base = grad.data_ptr()
    ptrs = [p.grad.data_ptr() for p in model.module.parameters()]
    assert all(base <= q < base + grad.numel() * 4 for q in ptrs)
