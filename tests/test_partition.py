import numpy as np
import pytest

from fedcluster.data.partition import PartitionError, dirichlet, eval_split, iid, shards


def _labels(n=2000, classes=10, seed=0):
    return np.random.default_rng(seed).integers(0, classes, n)


def _parts(kind, labels, rng, **kw):
    if kind == "iid":
        return iid(labels, 20, rng)
    if kind == "dirichlet":
        return dirichlet(labels, 20, kw.get("alpha", 0.5), rng)
    return shards(labels, 20, 2, rng)


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "shards"])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_partitions_are_disjoint_cover_and_reproducible(kind, seed):
    labels = _labels(seed=seed)
    a = _parts(kind, labels, np.random.default_rng(seed))
    b = _parts(kind, labels, np.random.default_rng(seed))
    c = _parts(kind, labels, np.random.default_rng(seed + 100))
    allidx = np.concatenate(a)
    assert len(a) == 20
    assert sum(len(p) for p in a) == len(labels)  # sizes sum to N
    assert len(np.unique(allidx)) == len(allidx)  # disjoint
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))  # same seed, same output
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def _skew(parts, labels):
    """Mean over clients of the share of the client's most common label."""
    return np.mean([np.bincount(labels[p], minlength=10).max() / max(len(p), 1) for p in parts])


def test_dirichlet_skew_grows_as_alpha_falls():
    labels = _labels(5000)
    skews = [np.mean([_skew(dirichlet(labels, 20, a, np.random.default_rng(s)), labels)
                      for s in range(5)]) for a in (100.0, 1.0, 0.1)]
    assert skews[0] < skews[1] < skews[2]
    assert skews[0] < 0.2 and skews[2] > 0.6


def test_shards_give_each_client_few_labels():
    labels = _labels(4000)
    parts = shards(labels, 20, 2, np.random.default_rng(0))
    assert max(len(np.unique(labels[p])) for p in parts) <= 4  # 2 shards, each spans <= 2 labels


def test_dirichlet_min_size_retries_then_explains():
    labels = _labels(400)
    parts = dirichlet(labels, 10, 0.5, np.random.default_rng(0), min_size=10)
    assert min(len(p) for p in parts) >= 10
    with pytest.raises(PartitionError, match="min_size=35 .*100 tries.*data.alpha"):
        dirichlet(labels, 10, 0.05, np.random.default_rng(0), min_size=35)
    with pytest.raises(PartitionError, match="exceeds"):
        dirichlet(labels, 10, 0.5, np.random.default_rng(0), min_size=41)
    with pytest.raises(PartitionError, match="alpha must be > 0"):
        dirichlet(labels, 10, 0.0, np.random.default_rng(0))


def test_eval_split_follows_each_clients_label_mix():
    train = _labels(3000)
    test = _labels(1000, seed=1)
    parts = dirichlet(train, 10, 0.3, np.random.default_rng(0))
    evals = eval_split(train, parts, test, np.random.default_rng(0))
    allidx = np.concatenate(evals)
    assert len(np.unique(allidx)) == len(allidx)  # disjoint eval sets
    for p, e in zip(parts, evals, strict=True):
        tr = np.bincount(train[p], minlength=10) / np.bincount(train, minlength=10)
        expected = tr * np.bincount(test, minlength=10)
        got = np.bincount(test[e], minlength=10)
        assert np.all(np.abs(got - expected) <= 1.0 + 1e-9)  # floor of cumulative cuts
