"""The refine method (KMeans of the clients' signatures from a shared model, then IFCA's
loss rule) on a synthetic federation: client c of group g has the quadratic loss
``|w - t_g|^2`` and one round of local training moves halfway to ``t_g``; and the
signatures themselves."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from _server import Stepper

from fedcluster.config import ClusterConfig, ConfigError, load_config
from fedcluster.fl.client import Update
from fedcluster.fl.clustering import (
    ModelInit,
    PointSpace,
    Refine,
    agreement,
    build_method,
    kmeans_labels,
    weight_layers,
)
from fedcluster.fl.clustering.refine import SIGNATURE_EPOCHS
from fedcluster.fl.clustering.signature import accumulate, round_signatures, stacked
from fedcluster.fl.flat import FlatModel
from fedcluster.loop import run_federation

torch.set_num_threads(1)

TARGETS = 4.0 * torch.eye(4, dtype=torch.float64)  # group g's optimum: 4 e_g
TRUTH = np.repeat(np.arange(4), 3)  # 12 clients, 3 per group


def losses(vectors: torch.Tensor, clients) -> torch.Tensor:
    """Each model's loss on each client: the squared distance to its group's optimum."""
    t = TARGETS[TRUTH[list(clients)]]
    return torch.cdist(t, vectors.double()).pow(2)


def train(server: Stepper, clients: np.ndarray, starts: np.ndarray, round_: int,
          lie: dict[int, int] | None = None) -> list[Update]:
    """Each client's update: halfway from its start model to its optimum, plus a little
    seeded noise; ``lie`` gives some clients another group's optimum for this round."""
    g = torch.Generator().manual_seed(round_)
    out = []
    for c, s in zip(clients, starts, strict=True):
        group = (lie or {}).get(int(c), TRUTH[c])
        start = server.models[int(s)]
        delta = 0.5 * (TARGETS[group] - start) + 0.02 * torch.randn(4, generator=g,
                                                                     dtype=torch.float64)
        out.append(Update(int(c), delta, 10, 0.0, 1))
    return out


def play(server: Stepper, round_: int, clients, lie=None):
    clients = np.asarray(clients)
    starts = server.assign(round_, clients, losses)
    return starts, server.step(train(server, clients, starts, round_, lie), seed=0,
                               round_=round_)


def refine(k=4, **kw) -> Stepper:
    cfg = ClusterConfig(method="refine", k=k, reduce="none", k_max=6, **kw)
    copies = 1 if k == "auto" else k
    return Stepper(torch.zeros(copies, 4, dtype=torch.float64), 12, 1.0, build_method(cfg),
                   PointSpace("weights", "none"), k_max=6)


def test_build_method_gives_refine_with_two_warmup_rounds_by_default():
    cfg = ClusterConfig(method="refine", k=3)
    assert isinstance(build_method(cfg), Refine)
    assert cfg.resolved_warmup == 2
    assert ClusterConfig(method="kmeans").resolved_warmup == 0
    assert ClusterConfig(method="refine", warmup_rounds=0).resolved_warmup == 0


def test_round_signatures_are_centred_scaled_and_sketched_when_long():
    g = torch.Generator().manual_seed(0)
    deltas = torch.randn(5, 30, generator=g, dtype=torch.float64) + 7.0  # a common part
    rows = round_signatures(deltas, dim=64, seed=0)  # D <= dim: exact
    centred = (deltas - deltas.mean(0)).numpy()
    rms = np.sqrt((centred ** 2).sum(1).mean())
    np.testing.assert_allclose(rows, centred / rms, rtol=1e-12)
    np.testing.assert_allclose(rows.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose((rows ** 2).sum(1).mean(), 1.0, rtol=1e-12)
    assert round_signatures(deltas, dim=8, seed=0).shape == (5, 8)
    assert (round_signatures(torch.ones(3, 4), dim=8, seed=0) == 0).all()  # no spread


def layered_updates(seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """40 clients' updates of a layer ``y = W h + b`` (W 10 x 30 at offset 0, b at 300):
    row i of a client's W update is ``n_i h_bar`` (``n_i`` its random count of label i,
    ``h_bar`` the mean input, long) plus its group's pattern (short); b's is ``-n``."""
    g = torch.Generator().manual_seed(seed)
    truth = np.repeat(np.arange(4), 10)
    h_bar = 10.0 * torch.ones(30, dtype=torch.float64)
    patterns = torch.randn(4, 10, 30, generator=g, dtype=torch.float64)
    counts = torch.randint(0, 6, (40, 10), generator=g).double()
    w = counts[:, :, None] * h_bar + 0.5 * patterns[truth]
    w += 0.05 * torch.randn(40, 10, 30, generator=g, dtype=torch.float64)
    return torch.cat([w.reshape(40, -1), -counts], dim=1), truth


def test_signatures_see_the_groups_behind_the_shared_input_direction():
    """The label counts times the mean input hide the groups from the flat update (the
    old signature); per matrix, with that direction projected out, they are plain."""
    deltas, truth = layered_updates()
    layers = [(0, 10, 30)]
    flat = round_signatures(deltas, dim=4096, seed=0)
    rows = round_signatures(deltas, dim=4096, seed=0, layers=layers)
    assert agreement(truth, kmeans_labels(flat, 4, seed=0, n_init=20))[0] < 0.5
    assert agreement(truth, kmeans_labels(rows, 4, seed=0, n_init=20))[0] == 1.0
    assert rows.shape == (40, 300)  # the bias is left out
    bias_free = deltas.clone()
    bias_free[:, 300:] = 0.0
    np.testing.assert_allclose(round_signatures(bias_free, 4096, 0, layers), rows, atol=1e-12)
    sketched = round_signatures(deltas, dim=64, seed=0, layers=layers)
    assert sketched.shape == (40, 64)
    assert agreement(truth, kmeans_labels(sketched, 4, seed=0, n_init=20))[0] == 1.0


def test_weight_layers_are_the_matrices_of_a_flat_model():
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3),
                              torch.nn.Flatten(), torch.nn.Linear(12, 5))
    flat = FlatModel(net)
    offsets = {s.name: s.offset for s in flat.slots}
    assert weight_layers(flat.slots) == [(offsets["0.weight"], 3, 18),
                                         (offsets["3.weight"], 5, 12)]


def test_a_clustered_client_moves_only_to_a_clearly_better_model():
    """Clients 0 and 1 were placed by the clustering, client 2 by loss: 0 keeps its
    cluster against a model 10 % better, 1 moves to one 50 % better, 2 follows the loss."""
    method = Refine(ClusterConfig(method="refine", k=2))
    state = {"clustered": [0, 1, 2], "signed": [0, 1], "pending": {}}
    table = torch.tensor([[1.0, 0.9], [1.0, 0.5], [1.0, 0.9]])
    chosen, _ = method.assign(5, np.arange(3), np.zeros(3, dtype=np.int64),
                              lambda c: table[torch.as_tensor(c)], state)
    assert chosen.tolist() == [0, 1, 1]


def refine_run(rounds: int) -> Stepper:
    """``refine()`` with the state ``init`` gives for a run of ``rounds`` (auto warm-up)."""
    server = refine()
    _, state = Refine(ClusterConfig(method="refine", k=4)).init(
        ModelInit(torch.zeros(4, dtype=torch.float64), lambda s: None, 0, (), 12, rounds))
    server.state = dataclasses.replace(server.state, method=state)
    return server


def test_an_auto_warmup_holds_until_every_client_has_a_signature():
    """Rounds 1-3 sample groups 0 and 1 only: the models stay held (the old rule
    clustered in round 3 without groups 2 and 3), and round 4 clusters all 12 clients."""
    server = refine_run(rounds=12)  # holds at most 12 // 3 = 4 rounds
    for r in (1, 2, 3):
        play(server, r, np.arange(6))
    assert (server.models == 0).all() and not server.state.method.get("clustered")
    _, fourth = play(server, 4, np.arange(6, 12))
    assert fourth.diagnostics["signatures"] == 12
    assert sorted(server.state.method["signed"]) == list(range(12))
    play(server, 5, np.arange(12))  # 0-5 start from the clusters round 4 gave them
    assert agreement(TRUTH, server.assignment)[0] == 1.0
    capped = refine_run(rounds=12)  # clients 6-11 never come: it clusters in round 5
    for r in (1, 2, 3, 4):
        play(capped, r, np.arange(6))
    assert (capped.models == 0).all()
    _, fifth = play(capped, 5, np.arange(6))
    assert fifth.diagnostics["signatures"] == 6 and capped.state.method["clustered"]


def test_accumulate_averages_each_clients_rounds():
    sig, cnt = accumulate({}, {}, np.array([3, 1]), np.array([[1.0, 2.0], [0.0, 4.0]]))
    sig, cnt = accumulate(sig, cnt, np.array([3]), np.array([[3.0, 0.0]]))
    assert cnt == {"3": 2, "1": 1} and sig["3"] == [2.0, 1.0] and sig["1"] == [0.0, 4.0]
    clients, points = stacked(sig)
    assert clients.tolist() == [1, 3] and points.tolist() == [[0.0, 4.0], [2.0, 1.0]]


def test_the_clustering_sees_every_client_of_the_warmup_rounds():
    """Round 2 samples only groups 0 and 1: clustered alone, its 6 clients would be cut
    into 4 clusters; with round 1's signatures (groups 2 and 3) every group is found."""
    server = refine(warmup_rounds=1)
    play(server, 1, [6, 7, 8, 9, 10, 11])
    assert server.k == 4 and server.state.method["counts"] == {str(c): 1 for c in range(6, 12)}
    assert (server.models == 0).all()  # held: round 2's updates are from the same model
    _, second = play(server, 2, np.arange(6))
    assert second.diagnostics["signatures"] == 12 and second.diagnostics["k_chosen"] == 4
    assert agreement(TRUTH[:6], second.clusters)[0] == 1.0
    assert server.state.method["clustered"] == list(range(12))
    starts, _ = play(server, 3, np.arange(6, 12))  # placed by loss
    assert len(set(starts[:3].tolist())) == 1 and len(set(starts.tolist())) == 2
    assert not set(starts.tolist()) & set(second.clusters.tolist())
    assert agreement(TRUTH, server.assignment)[0] == 1.0


def test_a_misplaced_client_moves_to_its_own_cluster():
    server = refine(warmup_rounds=0)
    everyone = np.arange(12)
    _, first = play(server, 1, everyone, lie={0: 1})  # client 0 looks like group 1
    assert first.clusters[0] == first.clusters[3] != first.clusters[1]  # misplaced
    assert agreement(TRUTH[1:], first.clusters[1:])[0] == 1.0
    starts, second = play(server, 2, everyone)
    assert starts[0] == first.clusters[1]  # its own group's model fits it best
    assert second.diagnostics["changed"] == 1
    assert agreement(TRUTH, server.assignment)[0] == 1.0
    state = json.loads(json.dumps(server.state.method))
    assert state["clustered"] == list(range(12)) and "signatures" not in state


def test_clients_first_seen_later_join_the_right_cluster():
    server = refine(warmup_rounds=0)
    early = np.array([0, 3, 6, 9, 1, 4])  # groups 0-3 and two more: half the clients
    play(server, 1, early)
    assert (server.assignment[[2, 5, 7, 8, 10, 11]] == -1).all()
    assert agreement(TRUTH[early], server.assignment[early])[0] == 1.0
    starts, _ = play(server, 2, np.array([2, 5, 7, 8, 10, 11]))
    assert agreement(TRUTH, server.assignment)[0] == 1.0
    assert starts.tolist() == server.assignment[[2, 5, 7, 8, 10, 11]].tolist()


def test_warmup_holds_one_model_and_auto_k_finds_the_groups():
    server = refine(k="auto", warmup_rounds=1)
    starts, first = play(server, 1, np.arange(12))
    assert (starts == 0).all() and (first.clusters == 0).all() and server.k == 1
    assert (server.models == 0).all() and not first.empty  # no step, no warning
    assert not server.state.method.get("clustered")  # nobody placed during the warm-up
    _, second = play(server, 2, np.arange(12))  # clusters the updates from the warm-up model
    assert server.k == 4 and second.diagnostics["k_chosen"] == 4
    assert agreement(TRUTH, server.assignment)[0] == 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_permuted_digits_with_half_of_the_clients_reach_ari_1(seed):
    """Label-permuted digits, disjoint pools, 20 clients in 4 groups, half sampled per
    round: every client ends in its group's cluster."""
    cfg = load_config(None, [
        "data.num_clients=20", "data.groups=4", "data.shift=permute-labels",
        "data.replicate=false", "data.partition=iid", "data.normalize=false",
        "model.name=mlp", "model.hidden=[64]", "client.batch_size=10", "client.lr=0.05",
        "cluster.method=refine", "cluster.k=4", "cluster.reduce=none",
        "server.clients_per_round=0.5", "rounds=8", f"seed={seed}", "run.threads=1"])
    final = run_federation(cfg).final
    assert final.ari == 1.0


def test_an_auto_warm_up_leaves_a_short_run_a_round_that_trains():
    refine = ClusterConfig(method="refine")
    assert [refine.for_rounds(r).resolved_warmup for r in (1, 2, 3, 20)] == [0, 1, 2, 2]
    assert refine.for_rounds(20) is refine
    fixed = ClusterConfig(method="refine", warmup_rounds=5)
    assert fixed.for_rounds(2) is fixed  # asked for explicitly: kept
    assert ClusterConfig(method="kmeans").for_rounds(1).resolved_warmup == 0


def test_signature_epochs_default_to_five_and_at_least_the_local_epochs():
    def state(local_epochs, **cluster):
        start = ModelInit(torch.zeros(4), lambda _: torch.zeros(4), 0, local_epochs=local_epochs)
        return build_method(ClusterConfig(method="refine", k=2, **cluster)).init(start)[1]

    assert state(1)["epochs"] == SIGNATURE_EPOCHS == 5
    assert "epochs" not in state(7)  # client.local_epochs is more: the rounds train as usual
    assert state(1, signature_epochs=3)["epochs"] == 3
    assert "epochs" not in state(1, signature_epochs=1)
    with pytest.raises(ConfigError, match="signature_epochs"):
        ClusterConfig(signature_epochs=0)


def test_clients_train_the_signature_epochs_until_the_clustering_then_their_own():
    """Every round up to and including the clustering trains from the held initial model
    for ``signature_epochs``; from the next round on, ``client.local_epochs``."""
    cfg = load_config(None, [
        "data.num_clients=8", "data.partition=iid", "model.name=mlp", "model.hidden=[16]",
        "client.batch_size=16", "client.drop_last=true", "cluster.method=refine",
        "cluster.k=2", "cluster.signature_epochs=3", "rounds=4", "run.threads=1"])
    rounds = run_federation(cfg).rounds
    per_epoch = {c.id: c.num_examples // 16 for c in rounds[0].clients}
    assert min(per_epoch.values()) >= 1
    clustered = next(r.round for r in rounds if r.clustering.get("clustered"))
    assert clustered == 3  # 2 held rounds, then the clustering
    for r in rounds:
        epochs = 3 if r.round <= clustered else 1
        assert {c.id: c.steps for c in r.clients} == {i: epochs * n for i, n in per_epoch.items()}
