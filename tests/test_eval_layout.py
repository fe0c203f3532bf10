"""Evaluation with the convolutional stem in oneDNN's blocked layout (``run.eval_layout``)."""

import pytest
import torch
from torch import nn

from fedcluster.build import prepare
from fedcluster.config import ModelConfig, load_config
from fedcluster.engines.layout import blocked_forward, blocked_stem, plain_layers
from fedcluster.engines.tuning import use_blocked_eval
from fedcluster.fl.evaluate import evaluate, evaluate_clients
from fedcluster.fl.flat import FlatModel
from fedcluster.loop import run_federation
from fedcluster.models import ModelSpec, build_model

torch.set_num_threads(1)
CPU = torch.device("cpu")
needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                                  reason="this torch has no oneDNN")


def _model(name: str, shape=(1, 28, 28)) -> nn.Module:
    return build_model(ModelSpec(shape, 10), ModelConfig(name=name), seed=0)


def test_plain_layers_flattens_nested_sequentials_and_refuses_other_containers():
    inner = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    net = nn.Sequential(inner, nn.Flatten(), nn.Linear(2, 3))
    assert plain_layers(net) == [inner[0], inner[1], net[1], net[2]]

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            return x + self.conv(x)

    assert plain_layers(nn.Sequential(nn.Conv2d(1, 2, 3), Residual())) is None


def test_blocked_stem_is_the_leading_convolutions_relus_and_max_poolings():
    assert blocked_stem(_model("mnist-cnn")) == 6  # conv, pool, relu, conv, pool, relu
    assert blocked_stem(_model("resnet18", (3, 32, 32))) == 0  # not plain Sequential
    assert blocked_stem(_model("mlp")) == 0  # no convolution first
    bn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    assert blocked_stem(bn) == 1
    circular = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, padding_mode="circular"), nn.ReLU())
    assert blocked_stem(circular) == 0


@needs_onednn
@pytest.mark.parametrize("channels_last", [False, True])
def test_blocked_evaluation_gives_the_dense_results(channels_last):
    model = FlatModel(_model("mnist-cnn"), channels_last)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 1, 28, 28, generator=gen), torch.randint(0, 10, (300,), generator=gen)
    idx = torch.randperm(300, generator=gen)[:250]
    dense = evaluate(model.module, x, y, idx, 64)
    blocked = evaluate(model.module, x, y, idx, 64, blocked_forward(model.module))
    assert blocked.n == dense.n == 250
    assert blocked.correct == dense.correct and blocked.correct5 == dense.correct5
    assert blocked.loss == pytest.approx(dense.loss, rel=1e-5)
    parts = [idx[:100], idx[100:]]
    per_dense = evaluate_clients(model.module, x, y, parts, 64)
    per_blocked = evaluate_clients(model.module, x, y, parts, 64, blocked_forward(model.module))
    for b, d in zip(per_blocked, per_dense, strict=True):
        assert (b.n, b.correct) == (d.n, d.correct)
        assert b.loss == pytest.approx(d.loss, rel=1e-5)


@needs_onednn
def test_eval_layout_choice_and_refusal():
    mnist, digits = _model("mnist-cnn"), _model("digits-cnn", (1, 8, 8))
    assert use_blocked_eval("auto", "mnist-cnn", mnist, CPU)  # measured faster: on
    assert not use_blocked_eval("auto", "digits-cnn", digits, CPU)  # not faster: off
    assert use_blocked_eval("blocked", "digits-cnn", digits, CPU)
    assert not use_blocked_eval("dense", "mnist-cnn", mnist, CPU)
    assert not use_blocked_eval("auto", "mnist-cnn", mnist, torch.device("cuda"))
    with pytest.raises(ValueError, match=r'run.eval_layout = "blocked".*ResNet'):
        use_blocked_eval("blocked", "resnet18", _model("resnet18", (3, 32, 32)), CPU)
    with pytest.raises(ValueError, match="run.eval_layout"):
        load_config(None, ["run.eval_layout=nchw"])


@needs_onednn
def test_a_run_with_blocked_evaluation_reports_the_dense_runs_metrics():
    base = ["data.num_clients=6", "model.name=mnist-cnn", "rounds=2", "client.optimizer=sgd",
            "client.lr=0.05", "server.clients_per_round=3", "run.threads=1", "plots.enabled=false"]
    runs = {}
    for layout in ("blocked", "dense"):
        cfg = load_config(None, [*base, f"run.eval_layout={layout}"])
        assert prepare(cfg)[1].blocked_eval == (layout == "blocked")
        runs[layout] = run_federation(cfg)
    for b, d in zip(runs["blocked"].rounds, runs["dense"].rounds, strict=True):
        assert b.accuracy == d.accuracy
        assert b.loss == pytest.approx(d.loss, rel=1e-5)
