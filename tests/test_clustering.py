"""Each clustering method on tiny synthetic update sets whose groups are known."""

import numpy as np
import pytest
import torch
from _server import Stepper

from fedcluster.config import ClusterConfig
from fedcluster.fl.client import Update
from fedcluster.fl.clustering import (
    CFL,
    IFCA,
    PointSpace,
    agglomerative_labels,
    agreement,
    best_k,
    bipartition,
    build_method,
    kmeans_labels,
    match_clusters,
    scan_k,
    split_criterion,
)
from fedcluster.fl.server import RoundUpdates

torch.set_num_threads(1)


def blobs(centres, per=6, spread=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.as_tensor(centres, dtype=torch.float64)
    pts = centres.repeat_interleave(per, 0)
    return pts + spread * torch.randn(pts.shape, generator=g, dtype=torch.float64), \
        np.repeat(np.arange(len(centres)), per)


def updates_of(deltas, sizes=None):
    return [Update(i, d, 10 if sizes is None else sizes[i], 0.0, 1) for i, d in enumerate(deltas)]


def test_agreement_is_one_for_a_renamed_labelling():
    truth = np.array([0, 0, 1, 1, 2, 2])
    assert agreement(truth, np.array([5, 5, 3, 3, 9, 9])) == (1.0, 1.0)
    ari, nmi = agreement(truth, np.array([0, 1, 0, 1, 0, 1]))
    assert ari < 0.1 and nmi < 0.1


def test_match_clusters_keeps_identity_and_numbers_extra_groups():
    models = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    cands = torch.tensor([[9.0, 0.0], [1.0, 0.0], [50.0, 50.0]])
    assert match_clusters(cands, models).tolist() == [1, 0, 2]


@pytest.mark.parametrize("k_true", [2, 3, 5])
def test_auto_k_finds_well_separated_blobs(k_true):
    centres = [[10.0 * i, (-1) ** i * 5.0 * i] for i in range(k_true)]
    pts, truth = blobs(centres, per=5)
    sse, sil, labels = scan_k(pts.numpy(), lambda p, k: kmeans_labels(p, k, 0), k_max=7)
    assert best_k(sil) == k_true
    assert agreement(truth, labels[k_true])[0] == 1.0
    assert list(sse) == list(range(1, 8)) and list(sil) == list(range(2, 8))
    assert all(sse[k] >= sse[k + 1] - 1e-9 for k in range(1, 7))  # the elbow curve falls


def _server(method="kmeans", k=3, **kw):
    cfg = ClusterConfig(method=method, k=k, reduce="none", k_max=6, **kw)
    space = PointSpace(cfg.features, "none", cfg.metric)
    copies = 1 if k == "auto" else k
    return Stepper(torch.zeros(copies, 2, dtype=torch.float64), 12, 1.0, build_method(cfg),
                   space, k_max=6)


def test_kmeans_server_recovers_groups_and_averages_each():
    deltas, truth = blobs([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]], per=4)
    server = _server()
    info = server.step(updates_of(deltas), seed=0, round_=1)
    assert agreement(truth, info.clusters)[0] == 1.0
    assert server.k == 3
    for c in range(3):  # lr = 1: each cluster model is its members' mean local model
        assert torch.allclose(server.models[c], deltas[info.clusters == c].mean(0))
    d = info.diagnostics
    assert d["cluster_sizes"] == [4, 4, 4] and d["changed"] == 0 and d["k_chosen"] == 3
    assert d["silhouette"] > 0.9 and set(d["sse_per_k"]) == set(range(1, 7))
    # next round, the same groups (now starting from their own models) keep their ids
    again = server.step(updates_of(torch.zeros(12, 2, dtype=torch.float64)), seed=0, round_=2)
    assert again.clusters.tolist() == info.clusters.tolist()
    assert again.diagnostics["changed"] == 0


def test_auto_k_in_the_server():
    deltas, truth = blobs([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0], [5.0, 5.0]], per=3)
    server = _server(k="auto")
    info = server.step(updates_of(deltas), seed=0, round_=1)
    assert server.k == 4 and agreement(truth, info.clusters)[0] == 1.0
    assert max(info.diagnostics["silhouette_per_k"].items(), key=lambda kv: kv[1])[0] == 4


def test_schedule_once_keeps_the_first_clustering():
    deltas, truth = blobs([[5.0, 0.0], [-5.0, 0.0]], per=6)
    server = _server(k=2, schedule="once")
    first = server.step(updates_of(deltas), seed=0, round_=1)
    swapped = server.step(updates_of(-deltas), seed=0, round_=2)  # would flip every label
    assert swapped.clusters.tolist() == first.clusters.tolist()
    assert swapped.diagnostics["clustered"] is False


def test_warmup_is_plain_fedavg_then_clusters_once():
    deltas, truth = blobs([[5.0, 0.0], [-5.0, 0.0]], per=6)
    server = _server(method="hierarchical", k=2, warmup_rounds=1, metric="euclidean")
    first = server.step(updates_of(deltas), seed=0, round_=1)
    assert (first.clusters == 0).all()
    for c in range(2):  # warm-up is FedAvg: every cluster model is the same average
        assert torch.allclose(server.models[c], deltas.mean(0))
    warm = server.models[0].clone()
    second = server.step(updates_of(deltas), seed=0, round_=2)
    assert server.k == 2 and agreement(truth, second.clusters)[0] == 1.0
    for c in range(2):  # FedAvg inside each cluster, from the warm-up model
        assert torch.allclose(server.models[c], warm + deltas[second.clusters == c].mean(0))


def test_hierarchical_cosine_groups_by_direction_not_length():
    g = torch.Generator().manual_seed(1)
    dirs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    truth = np.repeat(np.arange(3), 5)
    scale = torch.linspace(0.1, 10.0, 15, dtype=torch.float64)[torch.randperm(15, generator=g)]
    pts = (dirs[truth] + 0.02 * torch.randn(15, 3, generator=g, dtype=torch.float64))
    pts = pts * scale[:, None]
    assert agreement(truth, agglomerative_labels(pts.numpy(), 3, "cosine"))[0] == 1.0
    assert agreement(truth, agglomerative_labels(pts.numpy(), 3, "euclidean"))[0] < 1.0
    by_threshold = agglomerative_labels(pts.numpy(), None, "cosine", threshold=0.5)
    assert agreement(truth, by_threshold)[0] == 1.0


def test_ifca_joins_the_lowest_loss_model_and_an_empty_cluster_keeps_its_model():
    models = torch.tensor([[0.0, 0.0], [1.0, 1.0], [7.0, 7.0]], dtype=torch.float64)
    server = Stepper(models, 4, 1.0, IFCA())
    losses = torch.tensor([[0.2, 0.1, 0.9], [0.3, 0.5, 0.4], [2.0, 1.0, 3.0], [0.1, 0.2, 0.3]])

    def loss_fn(vectors, clients):
        assert torch.equal(vectors, server.models)
        return losses[clients]

    starts = server.assign(1, np.arange(4), loss_fn)
    assert starts.tolist() == [1, 0, 1, 0]
    delta = torch.ones(4, 2, dtype=torch.float64)
    info = server.step(updates_of(delta), seed=0, round_=1)
    assert info.clusters.tolist() == [1, 0, 1, 0] and info.empty == [2]
    assert torch.equal(server.models[2], models[2])  # nobody chose it: unchanged
    assert torch.allclose(server.models[0], models[0] + 1)
    assert torch.allclose(server.models[1], models[1] + 1)


def test_cfl_split_criterion_closed_form():
    w = torch.ones(2)
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert split_criterion(opposite, w, eps1=0.1, eps2=0.5) == (True, 0.0, 1.0)
    same = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert split_criterion(same, w, eps1=0.1, eps2=0.5) == (False, 1.0, 1.0)
    assert split_criterion(opposite * 0.1, w, eps1=0.1, eps2=0.5)[0] is False  # all small


def test_cfl_bipartition_by_cosine():
    deltas, truth = blobs([[1.0, 1.0, 0.0], [-1.0, -1.0, 0.0]], per=4, spread=0.1)
    assert agreement(truth, bipartition(deltas))[0] == 1.0


def _cfl(**kw):
    cfg = ClusterConfig(method="cfl", cfl_eps1=0.5, cfl_eps2=1.0, **kw)
    return Stepper(torch.zeros(3, dtype=torch.float64), 16, 1.0, CFL(cfg))


def test_cfl_splits_only_when_its_criterion_holds():
    opposite, truth = blobs([[2.0, 0.0, 0.0], [-2.0, 0.0, 0.0]], per=4, spread=0.1)
    server = _cfl()
    kept = server.step(updates_of(opposite + torch.tensor([3.0, 0.0, 0.0])), seed=0, round_=1)
    assert server.k == 1 and (kept.clusters == 0).all()  # mean update still large
    server = _cfl()
    split = server.step(updates_of(opposite), seed=0, round_=1)
    assert server.k == 2 and agreement(truth, split.clusters)[0] == 1.0
    assert split.diagnostics["cfl_norms"]["0"][1] > 1.0
    server = _cfl(warmup_rounds=3)
    assert (server.step(updates_of(opposite), seed=0, round_=2).clusters == 0).all()


def test_cfl_splits_recursively_up_to_k_max():
    # A, B agree against C, D (first split); inside each half the two then disagree
    centres = [[2.0, 0.0, 3.0], [-2.0, 0.0, 3.0], [0.0, 2.0, -3.0], [0.0, -2.0, -3.0]]
    deltas, truth = blobs(centres, per=3, spread=0.05)
    server = _cfl(k_max=4)
    server.step(updates_of(deltas), seed=0, round_=1)
    assert server.k == 2 and agreement(truth // 2, server.assignment[:12])[0] == 1.0
    # each half's model has moved to its own stationary point: the halves' means vanish
    halves = torch.from_numpy(server.assignment[:12])
    centred = deltas - torch.stack([deltas[halves == h].mean(0) for h in (0, 1)])[halves]
    server.step(updates_of(centred), seed=0, round_=2)
    assert server.k == 4 and agreement(truth, server.assignment[:12])[0] == 1.0
    server.step(updates_of(centred), seed=0, round_=3)
    assert server.k == 4  # capped at k_max


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_principal_coords_keep_distances_and_leave_the_input_alone(dtype):
    from fedcluster.fl.clustering.features import principal_coords

    x = torch.randn(6, 50, generator=torch.Generator().manual_seed(0), dtype=dtype)
    before = x.clone()
    coords = torch.from_numpy(principal_coords(x, chunk=7))
    assert torch.equal(x, before)  # centring happens on a copy, also for float64 input
    assert torch.allclose(torch.cdist(coords, coords), torch.cdist(x.double(), x.double()),
                          atol=1e-4 if dtype == torch.float32 else 1e-9)


@pytest.mark.parametrize(("reduce", "metric"), [("pca2", "euclidean"), ("none", "euclidean"),
                                                ("sketch", "euclidean"), ("pca2", "cosine")])
def test_weight_points_are_measured_from_the_reference(reduce, metric):
    """features = "weights" clusters local - reference; the points must not depend on how
    that difference is formed (translation-invariant reductions skip forming it)."""
    g = torch.Generator().manual_seed(1)
    deltas = torch.randn(8, 40, generator=g, dtype=torch.float64)
    starts = torch.randn(8, 40, generator=g, dtype=torch.float64)
    reference = torch.randn(40, generator=g, dtype=torch.float64)
    local = starts + deltas
    space = PointSpace("weights", reduce, metric, sketch_dim=16, seed=3)
    points, _ = space.points(local, deltas, reference)
    # the same clients seen from another origin: local and reference moved alike
    shift = torch.randn(40, generator=g, dtype=torch.float64)
    moved, _ = space.points(local + shift, deltas, reference + shift)
    if reduce == "sketch":  # the points themselves: sketch(local - reference)
        from fedcluster.fl.clustering.sketch import sketch

        want = sketch(local - reference, 16, 3).double().numpy()
        np.testing.assert_allclose(points, want, rtol=1e-4, atol=1e-4)
    dist = [np.linalg.norm(p[:, None] - p[None], axis=-1) for p in (points, moved)]
    np.testing.assert_allclose(dist[0], dist[1], rtol=1e-4, atol=1e-4)


def test_round_updates_hold_the_deltas_in_one_buffer():
    deltas, _ = blobs([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]], per=4)
    buffer = RoundUpdates(12)
    kept = [buffer.add(u) for u in updates_of(deltas.clone())]
    assert torch.equal(buffer.deltas, deltas) and buffer.clients.tolist() == list(range(12))
    kept[3].delta.zero_()  # each kept update's delta is its row of the buffer
    assert buffer.deltas[3].abs().sum() == 0
    with pytest.raises(ValueError, match="more than the 12 updates"):
        buffer.add(updates_of(deltas[:1])[0])
    server, listed = _server(), _server()  # the step takes the buffer or a list alike
    a = server.step(RoundUpdates.of(updates_of(deltas)), seed=0, round_=1)
    b = listed.step(updates_of(deltas), seed=0, round_=1)
    assert np.array_equal(a.clusters, b.clusters) and torch.equal(server.models, listed.models)
