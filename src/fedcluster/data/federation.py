"""The federation: which training and evaluation samples belong to which client."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from ..config import DataConfig
from ..rng import PARTITION, numpy_rng
from .partition import PARTITIONS, PartitionError, eval_split, iid
from .shift import client_groups, derangements, shift_group
from .sources import ArrayDataset

__all__ = ["Federation", "build_federation", "own_eval_split"]

EVAL_SPLIT = 1  # sub-stream of PARTITION for the per-client train/eval cut


@dataclass(frozen=True)
class Federation:
    """Client ``c`` trains on ``dataset.train_x[train_idx[c]]`` and is evaluated on
    ``dataset.test_x[eval_idx[c]]``. ``groups[c]`` is client ``c``'s true group (all 0
    unless the federation was built with ``data.groups > 1``)."""

    dataset: ArrayDataset
    train_idx: list[np.ndarray]
    eval_idx: list[np.ndarray]
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.groups is None:
            object.__setattr__(self, "groups", np.zeros(len(self.train_idx), dtype=np.int64))

    @property
    def num_clients(self) -> int:
        return len(self.train_idx)

    def train_sizes(self) -> np.ndarray:
        return np.array([len(i) for i in self.train_idx])

    def label_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-client label counts ``[clients, classes]`` for training and evaluation."""
        k = self.dataset.num_classes
        ytr, yte = self.dataset.train_y.numpy(), self.dataset.test_y.numpy()
        train = np.stack([np.bincount(ytr[i], minlength=k) for i in self.train_idx])
        test = np.stack([np.bincount(yte[i], minlength=k) for i in self.eval_idx])
        return train, test


def _split(labels: np.ndarray, n: int, cfg: DataConfig,
           rng: np.random.Generator) -> list[np.ndarray]:
    """``cfg.partition`` (a name in :data:`PARTITIONS`) over ``n`` clients, checked: one
    index array per client, indices of ``labels``, no sample given twice, ``min_size``."""
    if cfg.partition not in PARTITIONS:
        raise PartitionError(f"data.partition: {PARTITIONS.unknown_message(cfg.partition)}")
    parts = [np.asarray(p) for p in PARTITIONS.get(cfg.partition)(labels, n, cfg, rng)]
    where = f"data.partition = {cfg.partition!r}"
    if len(parts) != n:
        raise PartitionError(f"{where} returned {len(parts)} index arrays for {n} clients")
    for c, p in enumerate(parts):
        if p.ndim != 1 or (p.size and not np.issubdtype(p.dtype, np.integer)):
            raise PartitionError(f"{where}: client {c}'s indices are not a 1-D integer array "
                                 f"(got dtype {p.dtype}, shape {p.shape})")
        if p.size and (p.min() < 0 or p.max() >= len(labels)):
            raise PartitionError(f"{where}: client {c} has indices outside [0, {len(labels)})")
    every = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    if len(np.unique(every)) != len(every):
        raise PartitionError(f"{where} gave some samples to more than one client")
    smallest = min(len(p) for p in parts)
    if smallest < cfg.min_size:
        raise PartitionError(
            f"{where} gave a client {smallest} samples, fewer than "
            f"data.min_size = {cfg.min_size}; use fewer clients or lower data.min_size"
        )
    return [p.astype(np.int64) for p in parts]


def build_federation(dataset: ArrayDataset, cfg: DataConfig, seed: int, site: int = 0,
                     sites: int = 1) -> Federation:
    """Partition ``dataset`` over ``cfg.num_clients`` clients, keyed by ``seed``.

    With ``cfg.groups > 1`` the clients form groups with known structure (see
    :func:`grouped_federation`). With ``data.partition = "local"``, ``dataset`` is the
    own data of site ``site`` of ``sites`` (one per rank): it is split iid over that
    site's clients, and the other sites' clients hold nothing here. With
    ``data.eval_split = "per-client"`` each client's samples are then cut into its train
    and eval parts (:func:`own_eval_split`); the dataset's test split is not used.
    """
    fed = _federation(dataset, cfg, seed, site, sites)
    if cfg.eval_split == "per-client":
        return own_eval_split(fed, cfg.eval_fraction, numpy_rng(seed, PARTITION, EVAL_SPLIT))
    return fed


def own_eval_split(fed: Federation, fraction: float, rng: np.random.Generator) -> Federation:
    """Each client's training samples cut at random into train and eval parts (PFLlib's
    protocol): a client of ``n`` samples keeps ``ceil(fraction x n)`` for evaluation (as
    scikit-learn's ``train_test_split(train_size=1 - fraction)`` rounds) and the rest for
    training. Clients holding nothing (other sites' clients under ``"local"``) stay empty.

    The eval samples are gathered into the returned dataset's test tensors (client by
    client), so ``eval_idx`` keeps indexing ``test_x``; the original test split is dropped.
    Raises :class:`PartitionError`, naming the clients, when a client would be left
    without a training or an eval sample.
    """
    sizes = fed.train_sizes()
    # the rounding guard keeps e.g. 0.1 x 30 = 3.0000000000000004 at 3 eval samples
    n_eval = [math.ceil(round(fraction * n, 9)) for n in sizes]
    bad = [c for c, (n, e) in enumerate(zip(sizes, n_eval, strict=True)) if n and not 0 < e < n]
    if bad:
        least = max(2, math.ceil(1 / (1 - fraction)))
        shown = ", ".join(f"client {c}: {sizes[c]}" for c in bad[:5])
        raise PartitionError(
            f'data.eval_split = "per-client" with data.eval_fraction = {fraction}: '
            f"{len(bad)} of {fed.num_clients} clients would keep no training or no eval sample "
            f"({shown}{', ...' if len(bad) > 5 else ''} samples); each needs at least "
            f"{least} samples: raise data.min_size, use fewer clients "
            "or change data.eval_fraction")
    train_idx, own = [], []
    for part, e in zip(fed.train_idx, n_eval, strict=True):
        order = rng.permutation(part)
        own.append(np.sort(order[:e]))
        train_idx.append(np.sort(order[e:]))
    pool = torch.from_numpy(np.concatenate(own) if own else np.zeros(0, dtype=np.int64))
    ends = np.cumsum([len(o) for o in own])
    eval_idx = [np.arange(end - len(o), end, dtype=np.int64)
                for o, end in zip(own, ends, strict=True)]
    ds = fed.dataset
    dataset = dataclasses.replace(ds, test_x=ds.train_x[pool], test_y=ds.train_y[pool])
    return Federation(dataset, train_idx, eval_idx, fed.groups)


def _federation(dataset: ArrayDataset, cfg: DataConfig, seed: int, site: int,
                sites: int) -> Federation:
    if cfg.partition == "local":
        return _site_federation(dataset, cfg, seed, site, sites)
    samples = len(dataset.train_y) * (cfg.groups if cfg.groups > 1 and cfg.replicate else 1)
    if cfg.num_clients > samples:  # before any per-client work (10**7 clients ran out of memory)
        raise PartitionError(f"data.num_clients = {cfg.num_clients}: expected at most the "
                             f"{samples} training samples there are to share out (each "
                             "client needs at least one)")
    if cfg.groups > 1:
        return grouped_federation(dataset, cfg, seed)
    rng = numpy_rng(seed, PARTITION)
    labels = dataset.train_y.numpy()
    parts = _split(labels, cfg.num_clients, cfg, rng)
    evals = eval_split(labels, parts, dataset.test_y.numpy(), rng)
    return Federation(dataset, parts, evals)


def _check_shift(dataset: ArrayDataset, cfg: DataConfig) -> None:
    """Refuse a built-in shift the data cannot take, naming the keys (before any work)."""
    maps = derangements(dataset.num_classes)
    if cfg.shift == "permute-labels" and cfg.groups > maps:
        raise PartitionError(
            f'data.groups = {cfg.groups} with data.shift = "permute-labels": the dataset\'s '
            f"{dataset.num_classes} labels have {maps} derangement(s) (label maps that move "
            f"every label), so some groups would see the same labels; use at most {maps} "
            "group(s) or another shift")
    shape = tuple(dataset.input_shape)
    if cfg.shift == "rotate" and len(shape) != 3:
        raise PartitionError(
            f'data.shift = "rotate" turns images (samples [channels, height, width]); '
            f"this dataset's samples have shape {shape}: use \"permute-labels\" or a shift "
            "of your own (fedcluster.data.SHIFTS)")
    quarter = any((g * 360 / cfg.groups) % 180 == 90 for g in range(cfg.groups))
    if cfg.shift == "rotate" and quarter and shape[-1] != shape[-2]:
        raise PartitionError(
            f'data.shift = "rotate" with data.groups = {cfg.groups} turns some group by 90°, '
            f"which needs square images; these are {shape[-2]}x{shape[-1]}")


def grouped_federation(dataset: ArrayDataset, cfg: DataConfig, seed: int) -> Federation:
    """Clients split evenly into ``cfg.groups`` groups, each group under its own shift.

    With ``cfg.replicate`` every group holds the whole dataset under its shift (IFCA's
    rotated MNIST); otherwise train and test sets are first cut into disjoint per-group
    pools. Inside a group, ``cfg.partition`` splits the group's training pool over its
    clients and each client's eval set comes from the group's (shifted) test pool.
    """
    rng = numpy_rng(seed, PARTITION)
    n_groups = cfg.groups
    _check_shift(dataset, cfg)
    group_of = client_groups(cfg.num_clients, n_groups)
    ytr, yte = dataset.train_y.numpy(), dataset.test_y.numpy()
    if cfg.replicate:
        train_pools = [np.arange(len(ytr))] * n_groups
        test_pools = [np.arange(len(yte))] * n_groups
    else:
        train_pools = iid(ytr, n_groups, rng)
        test_pools = iid(yte, n_groups, rng)
    xs, ys, txs, tys = [], [], [], []
    train_idx: list[np.ndarray] = []
    eval_idx: list[np.ndarray] = []
    offset = test_offset = 0
    for g in range(n_groups):
        tr, te = torch.from_numpy(train_pools[g]), torch.from_numpy(test_pools[g])
        x, y = shift_group(dataset.train_x[tr], dataset.train_y[tr], cfg.shift, g, n_groups,
                           dataset.num_classes, seed)
        tx, ty = shift_group(dataset.test_x[te], dataset.test_y[te], cfg.shift, g, n_groups,
                             dataset.num_classes, seed)
        parts = _split(y.numpy(), int((group_of == g).sum()), cfg, rng)
        evals = eval_split(y.numpy(), parts, ty.numpy(), rng)
        train_idx += [p + offset for p in parts]
        eval_idx += [e + test_offset for e in evals]
        offset, test_offset = offset + len(y), test_offset + len(ty)
        xs.append(x), ys.append(y), txs.append(tx), tys.append(ty)
    shifted = dataclasses.replace(dataset, train_x=torch.cat(xs), train_y=torch.cat(ys),
                                  test_x=torch.cat(txs), test_y=torch.cat(tys))
    return Federation(shifted, train_idx, eval_idx, group_of)


def _site_federation(dataset: ArrayDataset, cfg: DataConfig, seed: int, site: int,
                     sites: int) -> Federation:
    n = cfg.num_clients
    if cfg.groups > 1:
        raise PartitionError('data.partition = "local" takes each site\'s own data as it is; '
                             "it cannot be combined with data.groups > 1")
    if n % sites:
        raise PartitionError(
            f'data.partition = "local" over {sites} sites (ranks) needs data.num_clients '
            f"= {n} to be a multiple of {sites}: each site holds the same number of clients")
    per = n // sites
    rng = numpy_rng(seed, PARTITION, site)
    labels = dataset.train_y.numpy()
    own = iid(labels, per, rng)
    smallest = min(len(p) for p in own)
    if smallest < cfg.min_size:
        raise PartitionError(
            f"site {site} ({cfg.root}) gave a client {smallest} samples, fewer than "
            f"data.min_size = {cfg.min_size}; use fewer clients or lower data.min_size")
    evals = eval_split(labels, own, dataset.test_y.numpy(), rng)
    train = [np.zeros(0, dtype=np.int64) for _ in range(n)]
    tests = [np.zeros(0, dtype=np.int64) for _ in range(n)]
    train[site * per:(site + 1) * per] = [p.astype(np.int64) for p in own]
    tests[site * per:(site + 1) * per] = evals
    return Federation(dataset, train, tests)
