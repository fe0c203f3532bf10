import numpy as np
import pytest
import torch

from fedcluster.config import ConfigError, DataConfig, load_config
from fedcluster.data import build_federation, load_dataset
from fedcluster.data.shift import (
    client_groups,
    derangements,
    label_permutation,
    rotate_images,
    shift_group,
)

torch.set_num_threads(1)


def test_rot90_is_exact_and_counter_clockwise():
    x = torch.arange(6, dtype=torch.uint8).view(1, 1, 2, 3)
    square = torch.arange(9, dtype=torch.uint8).view(1, 1, 3, 3)
    # counter-clockwise: the last column becomes the first row
    assert rotate_images(square, 90)[0, 0, 0].tolist() == [2, 5, 8]
    assert torch.equal(rotate_images(rotate_images(square, 90), 90), rotate_images(square, 180))
    assert torch.equal(rotate_images(rotate_images(square, 180), 180), square)
    assert torch.equal(rotate_images(square, 270), rotate_images(square, -90))
    assert torch.equal(rotate_images(x, 180), x.flip(-1).flip(-2))  # 180 works on any shape
    with pytest.raises(ValueError, match="square"):
        rotate_images(x, 90)


def test_other_angles_keep_the_size_and_move_pixels():
    x = torch.zeros(2, 1, 9, 9, dtype=torch.uint8)
    x[:, :, 4, 6:] = 255  # a bar to the right of the centre
    out = rotate_images(x, 45)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out[:, :, 4, 7].max() < 255  # the bar has moved away from where it was


@pytest.mark.parametrize("classes", [2, 3, 4, 10, 62])
def test_label_permutations_are_distinct_derangements_over_many_seeds(classes):
    """No group's permutation has a fixed point and no two groups share one, for group
    counts below, at and above the number of classes; below it, two groups also never
    agree on a label."""
    ident = np.arange(classes)
    for groups in sorted({2, 3, 4, classes - 1, classes, classes + 3} - {0, 1}):
        if groups > derangements(classes):
            with pytest.raises(ValueError, match=f"fewer than the {groups} groups"):
                label_permutation(classes, 0, 0, groups)
            continue
        for seed in range(25 if classes <= 10 else 5):
            perms = np.stack([label_permutation(classes, g, seed, groups)
                              for g in range(groups)])
            assert (np.sort(perms, axis=1) == ident).all()  # permutations
            assert not (perms == ident).any(), (groups, seed)  # no fixed point
            assert len({tuple(p) for p in perms}) == groups, (groups, seed)  # distinct
            if groups < classes:
                for g in range(groups):
                    for h in range(g):
                        assert not (perms[g] == perms[h]).any(), (groups, seed, g, h)
            again = [label_permutation(classes, g, seed, groups) for g in range(groups)]
            assert (np.stack(again) == perms).all()  # keyed by the seed
    if classes > 2:  # two labels have one derangement: no second group
        seen = {tuple(label_permutation(classes, 0, seed, 2)) for seed in range(25)}
        assert len(seen) >= 2  # the seed matters
    with pytest.raises(ValueError):
        label_permutation(1, 0, 0, 2)


def test_groups_of_four_labels_take_maps_that_agree_as_little_as_possible():
    assert [derangements(n) for n in range(7)] == [1, 0, 1, 2, 9, 44, 265]
    perms = {tuple(label_permutation(4, g, 3, 9)) for g in range(9)}
    assert len(perms) == 9 and all(p[i] != i for p in perms for i in range(4))
    for seed in range(25):  # 4 maps of 4 labels that pairwise share at most one label
        maps = np.stack([label_permutation(4, g, seed, 4) for g in range(4)])
        shared = (maps[:, None] == maps[None]).sum(axis=2)
        assert shared[~np.eye(4, dtype=bool)].max() == 1, seed


def test_shift_group_applies_the_permutation_to_labels_only():
    x, y = torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 2, 3])
    x2, y2 = shift_group(x, y, "permute-labels", 2, 3, 4, seed=5)
    assert x2 is x
    assert y2.tolist() == label_permutation(4, 2, 5, 3)[[0, 1, 2, 3]].tolist()


def test_client_groups_are_even_contiguous_blocks():
    assert client_groups(10, 3).tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    with pytest.raises(ValueError):
        client_groups(3, 4)


def _fed(**kw):
    cfg = DataConfig(num_clients=8, partition="iid", min_size=1, **kw)
    base = load_dataset(cfg)
    return base, build_federation(base, cfg, seed=0)


def test_rotated_federation_rotates_train_and_eval_by_group():
    base, fed = _fed(shift="rotate", groups=4)
    n_train, n_test = len(base.train_y), len(base.test_y)
    assert fed.groups.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert len(fed.dataset.train_y) == 4 * n_train  # replicated: every group has all of it
    for c in range(8):
        g = int(fed.groups[c])
        tr = fed.train_idx[c]
        assert ((tr >= g * n_train) & (tr < (g + 1) * n_train)).all()
        orig = torch.from_numpy(tr - g * n_train)
        want = torch.rot90(base.train_x[orig], g, dims=(-2, -1))
        assert torch.equal(fed.dataset.train_x[torch.from_numpy(tr)], want)
        assert torch.equal(fed.dataset.train_y[torch.from_numpy(tr)], base.train_y[orig])
        ev = fed.eval_idx[c]
        assert ((ev >= g * n_test) & (ev < (g + 1) * n_test)).all()
        orig_ev = torch.from_numpy(ev - g * n_test)
        assert torch.equal(fed.dataset.test_x[torch.from_numpy(ev)],
                           torch.rot90(base.test_x[orig_ev], g, dims=(-2, -1)))
    # inside a group the clients split the group's copy without overlap
    both = np.concatenate([fed.train_idx[0], fed.train_idx[1]])
    assert len(np.unique(both)) == len(both) == n_train


def test_permuted_federation_permutes_train_and_eval_alike():
    base, fed = _fed(shift="permute-labels", groups=2)
    n_train, n_test = len(base.train_y), len(base.test_y)
    for c in (0, 7):
        g = int(fed.groups[c])
        perm = torch.from_numpy(label_permutation(10, g, 0, 2))
        tr, ev = torch.from_numpy(fed.train_idx[c]), torch.from_numpy(fed.eval_idx[c])
        assert torch.equal(fed.dataset.train_y[tr], perm[base.train_y[tr - g * n_train]])
        assert torch.equal(fed.dataset.test_y[ev], perm[base.test_y[ev - g * n_test]])
        assert torch.equal(fed.dataset.train_x[tr], base.train_x[tr - g * n_train])


def test_permuted_disjoint_federation_keeps_its_known_groups():
    base, fed = _fed(shift="permute-labels", groups=4, replicate=False)
    assert fed.groups.tolist() == client_groups(8, 4).tolist()
    def pairs(xs, ys):
        return [(bytes(x.numpy().tobytes()), int(y)) for x, y in zip(xs, ys, strict=True)]

    original = set(pairs(base.train_x, base.train_y))
    for c in range(8):
        g = int(fed.groups[c])
        inverse = np.argsort(label_permutation(10, g, 0, 4))
        idx = torch.from_numpy(fed.train_idx[c])
        ys = fed.dataset.train_y[idx].numpy()
        xs = fed.dataset.train_x[idx]
        # each (image, label) is an original sample with its label sent through group g's map
        assert set(pairs(xs, torch.from_numpy(inverse[ys]))) <= original
        assert set(pairs(xs, ys)) - original  # and the labels did change


def test_disjoint_pools_without_replication():
    base, fed = _fed(shift="rotate", groups=2, replicate=False)
    assert len(fed.dataset.train_y) == len(base.train_y)
    assert len(fed.dataset.test_y) == len(base.test_y)
    every = np.concatenate(fed.train_idx)
    assert len(np.unique(every)) == len(every) == len(base.train_y)


def test_shift_config_is_validated():
    with pytest.raises(ConfigError, match="data.shift"):
        load_config(None, ["data.shift=rotate"])
    with pytest.raises(ConfigError, match="data.groups"):
        load_config(None, ["data.groups=50", "data.num_clients=20"])
    with pytest.raises(ConfigError, match="data.shift"):
        load_config(None, ["data.shift=flip", "data.groups=2"])


def test_more_permuted_groups_than_label_maps_is_refused_naming_the_keys():
    from fedcluster.data.partition import PartitionError
    from fedcluster.data.sources import ArrayDataset

    x, y = torch.zeros(40, 1, 2, 2), torch.arange(40) % 3
    three = ArrayDataset(x, y, x[:12], y[:12], 3)
    two = build_federation(three, DataConfig(num_clients=4, groups=2, shift="permute-labels"), 0)
    assert len(two.train_idx) == 4  # 3 labels have 2 derangements: 2 groups are fine
    cfg = DataConfig(num_clients=6, groups=3, shift="permute-labels")
    with pytest.raises(PartitionError, match=r'data.groups = 3 with data.shift = "permute-labels"'
                                              r".*3 labels have 2 derangement"):
        build_federation(three, cfg, seed=0)


def test_rotating_what_is_not_a_square_image_is_refused_naming_the_keys():
    from fedcluster.data.partition import PartitionError
    from fedcluster.data.sources import ArrayDataset

    def data(*shape):
        x, y = torch.rand(40, *shape), torch.arange(40) % 4
        return ArrayDataset(x, y, x[:12], y[:12], 4)

    with pytest.raises(PartitionError, match=r'data.shift = "rotate" turns images.*\(30,\)'):
        build_federation(data(30), DataConfig(num_clients=4, groups=2, shift="rotate"), 0)
    wide = data(1, 4, 6)
    with pytest.raises(PartitionError, match=r"data.groups = 4 turns some group by 90°.*4x6"):
        build_federation(wide, DataConfig(num_clients=4, groups=4, shift="rotate"), 0)
    half_turn = build_federation(wide, DataConfig(num_clients=4, groups=2, shift="rotate"), 0)
    assert len(half_turn.train_idx) == 4  # 0° and 180° keep a 4x6 image 4x6
