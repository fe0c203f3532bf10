"""Engines: the tuned sequential engine against a plain torch.optim loop, the vmap engine
against the sequential one, engine and thread choice, and refusals."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedcluster import load_config, prepare
from fedcluster.config import ConfigError
from fedcluster.engines import SequentialEngine, VmapEngine, choose_engine, choose_threads
from fedcluster.engines.tuning import step_flops
from fedcluster.engines.vmap import vmap_unsupported
from fedcluster.fl.flat import FlatModel
from fedcluster.models import ModelSpec, build_model
from fedcluster.rng import CLIENT, INIT, key_seed, torch_gen

BASE = ["data.num_clients=12", "run.threads=1", "run.engine=sequential"]


def _setup(*overrides):
    cfg = load_config(None, [*BASE, *overrides])
    ctx, engine = prepare(cfg)
    return cfg, ctx, engine


def _jobs(ctx, clients):
    """Different start vectors per client, so stacking must keep them apart."""
    start = ctx.model.vector()
    g = torch.Generator().manual_seed(3)
    return [(c, start + 0.01 * torch.randn(start.shape, generator=g)) for c in clients]


def test_sequential_engine_matches_a_plain_torch_optim_loop():
    cfg, ctx, engine = _setup("client.optimizer=adam", "client.lr=0.01", "client.local_epochs=2")
    client, start = _jobs(ctx, [3])[0]
    update = next(engine.train(5, [(client, start)]))

    ref = build_model(ModelSpec(ctx.federation.dataset.input_shape, 10), cfg.model,
                      key_seed(cfg.seed, INIT))
    ref.load_state_dict(ctx.model.state_dict(start))
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    data = engine
    idx = data.train_idx[client]
    gen = torch_gen(cfg.seed, CLIENT, 5, client)
    steps, losses = 0, []
    for _ in range(2):
        order = idx[torch.randperm(len(idx), generator=gen)]
        for s in range(len(idx) // 32):
            b = order[s * 32:(s + 1) * 32]
            loss = F.cross_entropy(ref(data.train_x[b]), data.train_y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            steps += 1
    expected = ctx.model.from_state_dict(ref.state_dict()) - start
    assert update.steps == steps > 0
    # Not an elementwise tolerance: the engine and torch.optim sum the same gradients in
    # another order, and Adam divides by sqrt(v) + eps, so for a coordinate whose
    # gradient is near zero a rounding difference changes the step by up to lr (one of
    # 38,282 coordinates was off by 1.2e-6 on one machine). _assert_same_update bounds
    # how many coordinates may differ and by how much in all.
    _assert_same_update(update.delta, expected, adam=True)
    assert update.train_loss == pytest.approx(sum(losses) / steps, rel=1e-5)


CASES = {
    "sgd": ["client.optimizer=sgd", "client.lr=0.05"],
    "sgd-momentum-wd": ["client.optimizer=sgd", "client.lr=0.05", "client.momentum=0.9",
                        "client.weight_decay=0.001"],
    "adam-2-epochs": ["client.optimizer=adam", "client.lr=0.005", "client.local_epochs=2"],
    "partial-batches": ["client.optimizer=adam", "client.drop_last=false",
                        "client.batch_size=48"],
}


def _assert_same_update(a, b, adam):
    """Equal up to float summation order. Adam's m / sqrt(v) turns a rounding difference in
    a near-zero gradient into a step of up to lr: allow that for a few coordinates."""
    if not adam:
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        return
    off = (a - b).abs() > 1e-6 + 1e-4 * b.abs()
    assert off.float().mean() < 1e-3, f"{int(off.sum())} of {off.numel()} coordinates differ"
    assert (a - b).norm() < 1e-3 * b.norm()


@pytest.mark.parametrize("case", CASES)
def test_vmap_engine_gives_the_sequential_engine_updates(case):
    cfg, ctx, seq = _setup("data.alpha=0.3", "data.min_size=0", *CASES[case])
    jobs = _jobs(ctx, list(range(12)))
    expected = list(seq.train(2, jobs))
    steps = {u.steps for u in expected}
    assert len(steps) > 2  # clients with different numbers of steps
    for chunk in (0, 5):
        vm = VmapEngine(ctx.federation, ctx.model, cfg.client, cfg.seed, chunk=chunk)
        got = list(vm.train(2, jobs))
        assert [u.client for u in got] == [u.client for u in expected]
        for a, b in zip(got, expected, strict=True):
            assert (a.steps, a.num_examples) == (b.steps, b.num_examples)
            _assert_same_update(a.delta, b.delta, adam=cfg.client.optimizer == "adam")
            if b.steps:
                assert a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
                assert a.delta.abs().max() > 0
            else:
                assert math.isnan(a.train_loss) and not a.delta.any()


def test_clients_without_a_full_batch_take_no_step_in_either_engine():
    cfg, ctx, seq = _setup("data.num_clients=40", "data.alpha=0.1", "data.min_size=0",
                           "client.optimizer=sgd")
    small = [c for c in range(40) if len(ctx.federation.train_idx[c]) < 32]
    assert small  # the partition has such clients
    jobs = _jobs(ctx, small[:3] + [int(ctx.federation.train_sizes().argmax())])
    vm = VmapEngine(ctx.federation, ctx.model, cfg.client, cfg.seed)
    for engine in (seq, vm):
        updates = list(engine.train(1, jobs))
        assert [u.steps for u in updates[:-1]] == [0] * len(updates[:-1])
        assert updates[-1].steps > 0
        assert all(not u.delta.any() for u in updates[:-1])


def test_an_empty_round_yields_nothing():
    cfg, ctx, seq = _setup()
    vm = VmapEngine(ctx.federation, ctx.model, cfg.client, cfg.seed)
    assert list(vm.train(1, [])) == list(seq.train(1, [])) == []


def _plain_eval(cfg, ctx, vector, client):
    """A client's evaluation sums from a fresh module's plain forward over all its eval
    samples at once, with cross_entropy in float64: none of the engines' code (blocked
    layouts, batching, worker shares, per-client passes). Also how many samples sit so
    near a tie that rounding may rank them either way (top-1, top-5).

    Tie slack: the engines compute float32 logits in another summation order (batches,
    blocked layout), which moves a logit by a few roundings, ~1e-6 of the largest logit
    for this net; 1e-4 of it is a wide bound, and a sample whose ranked logits are
    closer than that may count as right in one computation and wrong in the other.
    """
    ds = ctx.federation.dataset
    module = build_model(ModelSpec(ds.input_shape, ds.num_classes), cfg.model, 0)
    module.load_state_dict(ctx.model.state_dict(vector))
    module.eval()
    idx = torch.as_tensor(ctx.federation.eval_idx[client])
    with torch.no_grad():
        logits = module(ds.normalized(ds.test_x[idx]))
    y = ds.test_y[idx]
    ranked = logits.sort(dim=1, descending=True)
    slack = 1e-4 * logits.abs().amax(dim=1)
    gap1 = ranked.values[:, 0] - ranked.values[:, 1]
    gap5 = ranked.values[:, 4] - ranked.values[:, 5]
    return {
        "n": len(idx),
        "correct": int((ranked.indices[:, 0] == y).sum()),
        "correct5": int((ranked.indices[:, :5] == y[:, None]).any(dim=1).sum()),
        "loss_sum": float(F.cross_entropy(logits.double(), y, reduction="sum")),
        "near1": int((gap1 < slack).sum()),
        "near5": int((gap5 < slack).sum()),
    }


def _assert_matches(stats, ref):
    """EvalStats against summed _plain_eval results. loss_sum: float32 logits and float32
    sums over at most a few hundred positive terms err by well under 1e-5 relative; a
    wrong sample, a mean for a sum or a lost batch is off by far more."""
    assert stats.n == ref["n"]
    assert abs(stats.correct - ref["correct"]) <= ref["near1"]
    assert abs(stats.correct5 - ref["correct5"]) <= ref["near5"]
    assert stats.loss_sum == pytest.approx(ref["loss_sum"], rel=1e-5)


@pytest.mark.parametrize("engine", ["sequential", "vmap"])
def test_each_engine_evaluates_as_a_plain_forward_does(engine):
    cfg, ctx, seq = _setup("run.eval_batch_size=16")  # several batches per client
    start = ctx.model.vector()
    vector = start + next(seq.train(1, [(0, start)])).delta  # a model that predicts a bit
    eng = seq if engine == "sequential" else VmapEngine(ctx.federation, ctx.model,
                                                        cfg.client, cfg.seed)
    clients = [0, 4, 7]
    refs = [_plain_eval(cfg, ctx, vector, c) for c in clients]
    assert 0 < sum(r["correct"] for r in refs) < sum(r["n"] for r in refs)
    for stats, ref in zip(eng.evaluate_clients(vector, clients), refs, strict=True):
        _assert_matches(stats, ref)
    _assert_matches(eng.evaluate(vector, clients), {k: sum(r[k] for r in refs) for k in refs[0]})


@pytest.mark.parametrize("layer,kind", [(nn.BatchNorm1d(10), "BatchNorm"),
                                        (nn.Dropout(0.5), "Dropout")])
def test_vmap_refuses_batchnorm_and_dropout_clearly(layer, kind):
    module = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), layer)
    reason = vmap_unsupported(module)
    assert kind in reason and "'2'" in reason and "run.engine = 'sequential'" in reason
    cfg, ctx, _ = _setup()
    with pytest.raises(ValueError, match=kind):
        VmapEngine(ctx.federation, FlatModel(module), cfg.client, cfg.seed)
    vm_cfg = load_config(None, [*BASE, "run.engine=vmap"])
    with pytest.raises(ValueError, match=kind):
        choose_engine(vm_cfg, FlatModel(module), torch.device("cpu"))
    auto = load_config(None, [*BASE, "run.engine=auto"])
    assert choose_engine(auto, FlatModel(module), torch.device("cuda")) == "sequential"


def test_prepare_builds_the_engine_the_config_names():
    _, _, seq = _setup()
    _, _, vm = _setup("run.engine=vmap")
    assert isinstance(seq, SequentialEngine) and isinstance(vm, VmapEngine)
    auto = load_config(None, [*BASE, "run.engine=auto"])
    model = FlatModel(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    assert choose_engine(auto, model, torch.device("cuda")) == "vmap"


def test_thread_choice_follows_the_cost_of_a_step():
    model = FlatModel(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    assert step_flops(model, (1, 8, 8), 4) == 3 * 2 * 4 * 64 * 10
    conv = FlatModel(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(),
                                   nn.Linear(128, 10)))
    assert step_flops(conv, (1, 8, 8), 4) == 3 * 2 * 4 * (2 * 64 * 9 + 128 * 10)
    assert choose_threads(1e6, cores=2) == 1
    assert choose_threads(1e9, cores=2) == 2
    assert choose_threads(1e9, cores=1) == 1


def test_channels_last_and_contiguous_runs_train_the_same_model():
    deltas = []
    for layout in ("channels_last", "contiguous"):
        cfg, ctx, engine = _setup(f"run.memory_format={layout}")
        assert ctx.model.channels_last == (layout == "channels_last")
        update = next(engine.train(4, [(3, ctx.model.vector())]))
        deltas.append(ctx.model.state_dict(update.delta))
    for name, d in deltas[0].items():
        torch.testing.assert_close(d, deltas[1][name], rtol=1e-4, atol=1e-6)
    _, auto, _ = _setup()
    assert auto.model.channels_last  # digits-cnn on CPU


def test_worker_threads_give_the_updates_and_evaluations_of_one_worker():
    cfg, ctx, one = _setup("data.alpha=0.3", "data.min_size=0", "run.workers=1")
    two = SequentialEngine(ctx.federation, ctx.model, cfg.client, cfg.seed, workers=2)
    assert (one.workers, two.workers) == (1, 2)
    jobs = _jobs(ctx, [5, 0, 11, 3, 7])
    sizes = [len(ctx.federation.train_idx[c]) for c, _ in jobs]
    assert len(set(sizes)) > 2  # unequal clients: they finish out of order
    for a, b in zip(two.train(3, jobs), one.train(3, jobs), strict=True):
        assert (a.client, a.steps, a.num_examples) == (b.client, b.steps, b.num_examples)
        assert torch.equal(a.delta, b.delta) and a.train_loss == b.train_loss
    v, clients = jobs[0][1], list(range(12))
    a, b = two.evaluate(v, clients), one.evaluate(v, clients)
    assert (a.n, a.correct, a.correct5) == (b.n, b.correct, b.correct5)
    assert a.loss == pytest.approx(b.loss, rel=1e-5)
    per_a, per_b = two.evaluate_clients(v, clients), one.evaluate_clients(v, clients)
    assert [(s.n, s.correct) for s in per_a] == [(s.n, s.correct) for s in per_b]
    torch.testing.assert_close(two.client_losses(torch.stack([v, v + 0.01]), clients),
                               one.client_losses(torch.stack([v, v + 0.01]), clients))


def test_a_run_with_two_workers_trains_the_same_models_as_with_one():
    from fedcluster import run_federation

    runs = [run_federation(load_config(None, [*BASE, "rounds=2", "cluster.k=2",
                                              f"run.workers={w}"])) for w in (1, 2)]
    assert runs[1].context.workers == 2
    assert torch.equal(runs[0].models, runs[1].models)
    assert runs[0].final.accuracy == runs[1].final.accuracy


def test_shares_cut_whole_items_into_about_equal_work():
    cfg, ctx, _ = _setup()
    engine = SequentialEngine(ctx.federation, ctx.model, cfg.client, cfg.seed, workers=3)
    assert engine._shares([1] * 9) == [slice(0, 3), slice(3, 6), slice(6, 9)]
    assert engine._shares([10, 1, 1]) == [slice(0, 1), slice(1, 3)]
    assert engine._shares([5]) == [slice(0, 1)]
    assert engine._shares([100, 1, 1, 1]) == [slice(0, 1), slice(1, 4)]


def test_thread_plan_follows_the_model_cost_and_the_config(monkeypatch):
    from fedcluster.engines.tuning import plan_threads

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    small = FlatModel(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    big = FlatModel(nn.Sequential(nn.Flatten(), nn.Linear(64, 10**6)))  # ~1.2e10 per step
    spec = ModelSpec((1, 8, 8), 10)

    def plan(model, *overrides, device=cpu, parallel=True):
        return plan_threads(load_config(None, list(overrides)), model, spec, device, parallel)

    assert plan(small) == (1, 4)  # one worker per core
    assert plan(big) == (4, 1)  # one worker on all cores
    assert plan(small, "run.threads=2") == (2, 2)
    assert plan(small, "run.workers=3") == (1, 3)
    assert plan(small, "run.workers=2", "run.threads=3") == (3, 2)
    assert plan(small, "run.engine=vmap") == (1, 1)
    assert plan(small, parallel=False) == (1, 1)
    assert plan(small, device=cuda)[1] == 1
    with pytest.raises(ConfigError, match="run.workers"):
        load_config(None, ["run.workers=-1"])


def test_bad_engine_keys_are_rejected_by_name():
    from fedcluster.config import ConfigError

    with pytest.raises(ConfigError, match="run.engine"):
        load_config(None, ["run.engine=turbo"])
    with pytest.raises(ConfigError, match="run.vmap_chunk"):
        load_config(None, ["run.vmap_chunk=-1"])


def test_thread_choice_shares_the_cores_among_local_ranks(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert choose_threads(1e9) == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert choose_threads(1e9) == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert choose_threads(1e9) == 1


def test_worker_threads_get_their_share_and_the_server_keeps_all():
    """2 workers x 1 torch thread: each worker thread trains on 1 thread, and the main
    thread, which aggregates and clusters between rounds, keeps both."""
    cfg = load_config(None, ["data.num_clients=4", "run.workers=2", "run.threads=1"])
    before = torch.get_num_threads()
    try:
        ctx, engine = prepare(cfg)
        assert torch.get_num_threads() == 2
        assert list(engine._map(lambda r, x: torch.get_num_threads(), [0, 1, 2])) == [1, 1, 1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
