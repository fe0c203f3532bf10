"""BatchNorm running statistics are aggregated like parameters (weighted FedAvg).

The documented choice: float buffers (running_mean, running_var) live in the flat
vector, so each cluster model's statistics become the sample-weighted mean of its
members' local statistics, moved by the server learning rate like the weights;
the integer counter num_batches_tracked stays out of the vector.
"""

import numpy as np
import torch
from _server import Stepper
from torch import nn

from fedcluster.config import ClientConfig
from fedcluster.fl.client import Update, local_train
from fedcluster.fl.flat import FlatModel

torch.set_num_threads(1)


def _model():
    torch.manual_seed(0)
    return FlatModel(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                   nn.Flatten(), nn.Linear(4 * 6 * 6, 2)))


def _bn(model: FlatModel) -> nn.BatchNorm2d:
    return model.module[1]


def _train(model, start, shift, n):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, 1, 8, 8, generator=g) + shift
    y = torch.randint(0, 2, (n,), generator=g)
    cfg = ClientConfig(optimizer="sgd", lr=0.01, batch_size=8)
    delta, loss, steps = local_train(model, start, x, y, torch.arange(n), cfg, g)
    local = {"mean": _bn(model).running_mean.clone(), "var": _bn(model).running_var.clone()}
    return delta, local


def test_bn_buffers_are_in_the_flat_vector():
    model = _model()
    names = {s.name for s in model.slots if s.is_buffer}
    assert names == {"1.running_mean", "1.running_var"}  # not num_batches_tracked


def test_bn_statistics_are_sample_weighted_means():
    model = _model()
    start = model.vector()
    d_a, a = _train(model, start, shift=+3.0, n=48)
    d_b, b = _train(model, start, shift=-3.0, n=16)
    assert (a["mean"] - b["mean"]).abs().max() > 0.5  # the clients saw different data
    server = Stepper(start, num_clients=2, lr=1.0)
    server.step([Update(0, d_a, 48, 0.0, 6), Update(1, d_b, 16, 0.0, 2)], seed=0, round_=1)
    model.load(server.models[0])
    expect_mean = (48 * a["mean"] + 16 * b["mean"]) / 64
    expect_var = (48 * a["var"] + 16 * b["var"]) / 64
    assert torch.allclose(_bn(model).running_mean, expect_mean, atol=1e-5)
    assert torch.allclose(_bn(model).running_var, expect_var, atol=1e-5)


def test_server_lr_moves_statistics_part_way():
    model = _model()
    start = model.vector()
    start_mean = _bn(model).running_mean.clone()
    delta, local = _train(model, start, shift=2.0, n=32)
    server = Stepper(start, num_clients=1, lr=0.25)
    server.step([Update(0, delta, 32, 0.0, 4)], seed=0, round_=1)
    model.load(server.models[0])
    expect = start_mean + 0.25 * (local["mean"] - start_mean)
    np.testing.assert_allclose(_bn(model).running_mean.numpy(), expect.numpy(), atol=1e-6)


def test_eval_uses_the_aggregated_statistics():
    model = _model()
    start = model.vector()
    delta, _ = _train(model, start, shift=5.0, n=32)
    model.load(start + delta)
    model.module.eval()
    x = torch.randn(4, 1, 8, 8) + 5.0
    with_stats = model.module(x)
    model.load(start)  # fresh statistics: mean 0, var 1
    model.module.eval()
    assert not torch.allclose(with_stats, model.module(x))
