import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _server import Stepper
from torch import nn

from fedcluster.config import ClientConfig, ClusterConfig
from fedcluster.fl import (
    FlatModel,
    Update,
    build_method,
    group_means,
    local_train,
    match_clusters,
    sample_clients,
    server_step,
    weighted_mean,
)
from fedcluster.fl.clustering import PointSpace, kmeans_labels


def _kmeans_server(initial, k, num_clients, lr, reduce="pca2"):
    """The reference's setup: k copies of ``initial``, KMeans every round on the updates."""
    method = build_method(ClusterConfig(method="kmeans", k=k, reduce=reduce))
    return Stepper(initial.unsqueeze(0).repeat(k, 1), num_clients, lr, method,
                   PointSpace(reduce=reduce))


def test_weighted_mean_exact():
    v = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    assert torch.equal(weighted_mean(v, torch.tensor([1.0, 3.0])), torch.tensor([2.5, 5.0]))
    with pytest.raises(ValueError):
        weighted_mean(v, torch.zeros(2))


def test_group_means_exact_and_empty_group_is_zero():
    v = torch.tensor([[0.0], [2.0], [10.0], [4.0]])
    means, totals = group_means(v, torch.tensor([1.0, 1.0, 2.0, 2.0]), torch.tensor([0, 0, 2, 2]),
                                3)
    assert means.flatten().tolist() == [1.0, 0.0, 7.0]
    assert totals.tolist() == [2.0, 0.0, 4.0]


def test_server_step_is_lambda_times_the_mean_change():
    g, target = torch.tensor([1.0, -1.0]), torch.tensor([3.0, 1.0])
    assert server_step(g, target, 1.0).tolist() == [3.0, 1.0]  # FedAvg
    assert server_step(g, target, 0.5).tolist() == [2.0, 0.0]
    assert g.tolist() == [1.0, -1.0]  # not in place


def _bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 2))


def test_channels_last_layout_changes_only_the_order_inside_the_vector():
    def net_():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(),
                             nn.Linear(12, 2))

    net, twin = net_(), net_()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    last, plain = FlatModel(net, channels_last=True), FlatModel(twin)
    conv = net[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert conv.data_ptr() == last.flat.data_ptr()  # still a view into the flat vector
    assert not torch.equal(last.flat, plain.flat)  # the conv's numbers are reordered
    v = last.vector()
    for k, t in last.state_dict(v).items():
        assert t.is_contiguous() and torch.equal(t, before[k])
    assert torch.equal(last.from_state_dict(last.state_dict(v)), v)
    assert torch.equal(last.from_state_dict(plain.state_dict(plain.vector())), v)

    x = torch.randn(5, 2, 4, 4)
    grads = []
    for flat in (last, plain):
        grad = flat.attach_grad()
        F.cross_entropy(flat.module.train()(x), torch.tensor([0, 1, 0, 1, 1])).backward()
        assert flat.module[0].weight.grad.stride() == flat.module[0].weight.stride()
        padded = torch.cat([grad, torch.zeros(flat.numel - flat.num_params)])
        grads.append(flat.state_dict(padded))
    for k in grads[0]:
        torch.testing.assert_close(grads[0][k], grads[1][k])
    assert any(g.abs().sum() > 0 for g in grads[0].values())


def test_flatten_round_trip_includes_buffers():
    net = _bn_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flat = FlatModel(net)
    n_float = sum(v.numel() for v in before.values() if v.is_floating_point())
    assert flat.numel == n_float  # params + running_mean/var, not num_batches_tracked
    vec = flat.vector()
    for k, v in flat.state_dict(vec).items():
        assert torch.equal(v, before[k])
    other = torch.randn_like(vec)
    flat.load(other)
    assert torch.equal(net[1].running_var, flat.state_dict(other)["1.running_var"])
    assert torch.equal(flat.from_state_dict(flat.state_dict(other)), other)
    net.train()
    net(torch.randn(4, 1, 4, 4))  # BatchNorm updates its running stats in place...
    assert not torch.equal(flat.vector(), other)  # ...inside the flat vector
    other[0] = 123.0
    assert flat.vector()[0] != 123.0  # load copied, did not alias


def _toy(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 4, 4, generator=g)
    return x, (x.sum(dim=(1, 2, 3)) > 0).long()


def test_local_training_never_changes_the_start_vector():
    flat = FlatModel(_bn_net())
    start = flat.vector()
    keep = start.clone()
    x, y = _toy()
    cfg = ClientConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=8)
    delta, loss, steps = local_train(flat, start, x, y, torch.arange(64), cfg,
                                     torch.Generator().manual_seed(0))
    assert torch.equal(start, keep)
    assert steps == 8 and delta.abs().sum() > 0 and np.isfinite(loss)
    # a second client from the same start gets the same result: no state leaked
    delta2, _, _ = local_train(flat, start, x, y, torch.arange(64), cfg,
                               torch.Generator().manual_seed(0))
    assert torch.equal(delta, delta2)


def test_drop_last_and_small_clients():
    flat = FlatModel(_bn_net())
    x, y = _toy()
    cfg = ClientConfig(batch_size=32, drop_last=True)
    gen = torch.Generator().manual_seed(0)
    delta, loss, steps = local_train(flat, flat.vector(), x, y, torch.arange(20), cfg, gen)
    assert steps == 0 and np.isnan(loss) and delta.abs().sum() == 0
    cfg = ClientConfig(batch_size=32, drop_last=False, local_epochs=2)
    assert local_train(flat, flat.vector(), x, y, torch.arange(40), cfg, gen)[2] == 4


def test_sampling_is_keyed_by_seed_and_round():
    a = sample_clients(100, 10, 0, 3)
    assert np.array_equal(a, sample_clients(100, 10, 0, 3))
    assert len(np.unique(a)) == 10 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, sample_clients(100, 10, 0, 4))
    assert not np.array_equal(a, sample_clients(100, 10, 1, 3))
    assert np.array_equal(sample_clients(5, 5, 0, 1), np.arange(5))


def _groups(centres, per=6, dim=50, noise=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    truth = torch.arange(len(centres)).repeat_interleave(per)
    pts = centres[truth] + noise * torch.randn(len(truth), dim, generator=g)
    return pts, truth.numpy()


def _same_partition(a, b):
    return all(len(set(b[a == v])) == 1 for v in np.unique(a)) and len(set(a)) == len(set(b))


@pytest.mark.parametrize("reduce", ["pca2", "none"])
def test_kmeans_recovers_known_groups(reduce):
    centres = torch.randn(3, 50, generator=torch.Generator().manual_seed(1)) * 3
    pts, truth = _groups(centres)
    points, coords = PointSpace(features="updates", reduce=reduce).points(pts, pts, pts[0] * 0)
    assert points.shape[1] == (2 if reduce == "pca2" else len(pts) - 1) and coords.shape[1] == 2
    assert _same_partition(kmeans_labels(points, 3, seed=0), truth)


def test_match_clusters_follows_models_not_labels():
    models = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    candidates = torch.tensor([[0.0, 9.0], [1.0, 0.0], [9.0, 1.0]])
    perm = match_clusters(candidates, models)
    assert perm.tolist() == [2, 0, 1]
    perm = match_clusters(candidates[[0, 2]], models)  # fewer groups than models
    assert perm.tolist() == [2, 1]


def test_server_keeps_cluster_identity_across_rounds():
    """Two fixed groups of clients push in opposite directions; whatever labels KMeans
    draws, each group stays with the same cluster id round after round."""
    dim, k = 20, 2
    server = _kmeans_server(torch.zeros(dim), k, num_clients=8, lr=1.0)
    direction = torch.zeros(2, dim)
    direction[0, 0], direction[1, 1] = 1.0, 1.0
    truth = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    history = []
    for r in range(1, 6):
        g = torch.Generator().manual_seed(r)
        updates = [Update(c, direction[truth[c]] + 0.01 * torch.randn(dim, generator=g), 10,
                          0.0, 1) for c in range(8)]
        info = server.step(updates, seed=r, round_=r)
        history.append(info.clusters.copy())
        assert info.empty == []
    first = history[0]
    assert _same_partition(first, truth)
    for h in history[1:]:
        assert np.array_equal(h, first)  # same ids, every round
    # each cluster model moved only along its own group's direction, once per round
    for c in range(k):
        group = truth[first == c][0]
        assert server.models[c][group] == pytest.approx(5.0, abs=0.1)
        assert server.models[c][1 - group] == pytest.approx(0.0, abs=0.1)


def test_empty_cluster_keeps_its_model(caplog):
    server = _kmeans_server(torch.zeros(3), 3, num_clients=3, lr=1.0)
    same = torch.ones(3)
    updates = [Update(c, same.clone(), 5, 0.0, 1) for c in range(3)]  # one distinct point
    info = server.step(updates, seed=0, round_=1)
    assert len(info.empty) == 2
    for c in info.empty:
        assert torch.equal(server.models[c], torch.zeros(3))
    assert "received no clients" in caplog.text
    caplog.clear()
    again = server.step([Update(c, same.clone(), 5, 0.0, 1) for c in range(3)], seed=0,
                        round_=2)
    assert len(again.empty) == 2  # still empty, and still in the record,
    assert "received no clients" not in caplog.text  # but said once, not every round


def test_unassigned_client_starts_from_largest_cluster():
    server = _kmeans_server(torch.zeros(2), 2, num_clients=5, lr=1.0)
    server.set_assignment([1, 1, 0, -1, -1])
    assert server.start_cluster(3) == 1 and server.start_cluster(2) == 0
