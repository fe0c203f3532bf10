import numpy as np
import torch
import torch.nn.functional as F

from fedcluster.build import build, prepare
from fedcluster.config import load_config
from fedcluster.fl.evaluate import evaluate, evaluate_clients
from fedcluster.fl.sampling import sample_clients

torch.set_num_threads(1)


def _setup(*overrides):
    cfg = load_config(None, ["data.num_clients=4", "data.partition=iid", "model.name=mlp",
                             "model.hidden=[16]", "client.optimizer=sgd", "client.lr=0.1",
                             "data.min_size=1", *overrides])
    return cfg, *prepare(cfg)


def test_evaluate_clients_splits_the_pooled_evaluation():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x, y = torch.randn(30, 1, 2, 2), torch.randint(0, 3, (30,))
    idx = [torch.arange(0, 7), torch.arange(7, 7), torch.arange(10, 30)]
    per = evaluate_clients(module, x, y, idx, batch_size=4)
    assert [s.n for s in per] == [7, 0, 20]
    pooled = evaluate(module, x, y, torch.cat(idx), batch_size=64)
    total = per[0] + per[1] + per[2]
    assert abs(total.correct - pooled.correct) < 1e-9
    assert abs(total.loss - pooled.loss) < 1e-5
    with torch.no_grad():
        want = F.cross_entropy(module(x[10:30]), y[10:30])
    assert abs(per[2].loss - float(want)) < 1e-5


def test_client_losses_is_each_vector_on_each_clients_training_data():
    cfg, ctx, engine = _setup()
    v0 = ctx.model.vector()
    vectors = torch.stack([v0, v0 * 0.0, v0 * 2.0])
    losses = engine.client_losses(vectors, [3, 1])
    assert losses.shape == (2, 3)
    for row, client in enumerate([3, 1]):
        idx = engine.train_idx[client]
        for j in range(3):
            ctx.model.load(vectors[j])
            with torch.no_grad():
                want = F.cross_entropy(ctx.model.module(engine.train_x[idx]), engine.train_y[idx])
            assert abs(float(losses[row, j]) - float(want)) < 1e-5
    assert abs(float(losses[0, 1]) - np.log(10)) < 1e-5  # an all-zero model: uniform


def test_local_training_never_changes_the_rounds_start_in_place():
    """FedAvg of clients trained from one start must equal the mean of their independent
    runs; with shared storage it would silently become sequential SGD."""
    cfg, _, _ = _setup("cluster.k=1")
    run = build(cfg)
    engine, server, state = run.rounds.engine, run.rounds.server, run.rounds.init()
    start = state.models[0].clone()
    sampled = sample_clients(4, 4, cfg.seed, 1)
    jobs = [(int(c), state.models[0]) for c in sampled]
    updates = list(engine.train(1, jobs))
    assert torch.equal(state.models[0], start)  # nobody wrote into it
    alone = [next(engine.train(1, [(int(c), start.clone())])) for c in sampled]
    for u, a in zip(updates, alone, strict=True):
        assert torch.equal(u.delta, a.delta)
    state, _ = server.step(state, 1, updates)
    w = torch.tensor([float(u.num_examples) for u in alone])
    want = start + (w[:, None] * torch.stack([a.delta for a in alone])).sum(0) / w.sum()
    assert torch.allclose(state.models[0], want, atol=1e-6)
