"""Assembly: a config becomes a run's parts (data, federation, model, engine, server,
and the round function), with no training. The round loop is loop.py.

``mode = "federated"`` plays the federated round (loop.FederatedRound) with the
configured clustering method; ``mode = "centralized"`` the pooled baseline
(engines/pooled.py). With ``dist`` (a started process group) the engine is spread
over its ranks and aggregation goes through them (dist/engine.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from .callbacks.base import CallbackList
from .config import Config, ConfigError
from .data import build_augment, build_federation, load_dataset
from .data.federation import Federation
from .engines import Engine, make_engine
from .engines.tuning import plan_threads, use_channels_last
from .fl.aggregate import Aggregator, LocalAggregator
from .fl.algorithms import CLIENT_STATE, build_hooks
from .fl.attack import attack_of, flipped
from .fl.clustering import ModelInit, PointSpace, build_method, weight_layers
from .fl.flat import FlatModel
from .fl.privacy import Privacy
from .fl.robust import Rule
from .fl.server import Server
from .fl.server_opt import ServerOpt
from .fl.state import RunState
from .fl.validate import check_batch_size
from .models import ModelSpec, build_model
from .profiling import Profiler
from .records import RoundResult, RunContext
from .rng import INIT, SKETCH, key_seed

if TYPE_CHECKING:
    from .dist.group import DistInfo

__all__ = ["Rounds", "Run", "build", "build_context", "model_init", "prepare",
           "resolve_device"]

log = logging.getLogger(__name__)


class Rounds(Protocol):
    """A run's round function and how its state starts."""

    restarts: int  # initial states to try (IFCA's random restarts)
    restart_rounds: int  # rounds each is tried for

    def init(self, restart: int = 0) -> RunState:
        """The state before round 1 (``restart`` numbers the initial states tried)."""
        ...

    def __call__(self, state: RunState, round_: int, callbacks: CallbackList,
                 prof: Profiler) -> tuple[RunState, RoundResult]:
        """Play round ``round_`` from ``state``: the new state and the round's record."""
        ...

    def score(self, state: RunState) -> float:
        """Lower is better: how a tried initial state did (its training loss)."""
        ...


@dataclass(frozen=True)
class Run:
    """Everything a run needs besides its state."""

    context: RunContext
    rounds: Rounds
    aggregator: Aggregator
    writes: bool  # this process writes the run directory (checkpoints)

    @property
    def config(self) -> Config:
        return self.context.config


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"run.device = {name!r} but CUDA is not available on this machine")
    return torch.device(name)


def build_context(cfg: Config, run_dir: Path | None = None, dist: DistInfo | None = None,
                  parallel_clients: bool = True) -> RunContext:
    """Load data, partition it and build the model on its device; no engine, no training.

    With ``dist`` (a started process group) the model lives on the rank's device and,
    with ``data.partition = "local"``, the data is this rank's own. Sets torch's thread
    count and, with ``parallel_clients``, how many clients train at once (see
    :func:`~fedcluster.engines.tuning.plan_threads`).
    """
    device = dist.device if dist is not None else resolve_device(cfg.run.device)
    site, sites = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    data_cfg = cfg.data
    if data_cfg.partition == "local":  # each rank's own data: data.root may name its rank
        data_cfg = dataclasses.replace(data_cfg, root=data_cfg.root.replace("{rank}", str(site)))
    dataset = load_dataset(data_cfg)
    federation = build_federation(dataset, data_cfg, cfg.seed, site, sites)
    spec = ModelSpec(dataset.input_shape, dataset.num_classes)
    module = build_model(spec, cfg.model, key_seed(cfg.seed, INIT)).to(device)
    model = FlatModel(module, use_channels_last(cfg.run.memory_format, module, device))
    threads, workers = plan_threads(cfg, model, spec, device, parallel_clients)
    # With several workers this (main) thread gets all of their threads: it runs the
    # server's aggregation and clustering while they wait; the sequential engine shares
    # them out, ``threads`` to each worker thread.
    torch.set_num_threads(threads * workers)
    log.debug("%d torch threads, %d worker(s)", threads, workers)
    return RunContext(cfg, run_dir, federation, model, device, workers)


def prepare(cfg: Config, run_dir: Path | None = None,
            dist: DistInfo | None = None) -> tuple[RunContext, Engine]:
    """Load data, partition it, build the model and the engine; no training yet.

    With ``dist`` the engine is distributed over the process group's ranks.
    """
    ctx = build_context(cfg, run_dir, dist)
    if cfg.attack.kind == "label-flip":  # the attackers train on flipped labels
        ctx = dataclasses.replace(ctx, federation=flipped(ctx.federation, attack_of(cfg)))
    if cfg.data.partition != "local":  # every client's size is known here
        check_batch_size(ctx.federation.train_sizes(), cfg.client)
    dataset = ctx.federation.dataset
    augment = build_augment(dataset.augmentation, dataset.mean, dataset.std, cfg.data.augment)
    engine: Engine = make_engine(cfg, ctx.federation, ctx.model, ctx.device, augment,
                                 ctx.workers)
    if dist is not None:
        engine = _distribute(engine, cfg, ctx.federation, ctx.model, dist)
    return ctx, engine


def _fingerprint(cfg: Config) -> int:
    """A hash of everything that must be equal on every rank: not the data root, the
    per-machine ``[run]`` settings, or what only rank 0 does (output sections)."""
    same = cfg.to_dict()
    same["data"]["root"] = ""
    for local in ("run", "plots", "tensorboard", "mlflow", "wandb", "notify"):
        same.pop(local, None)
    text = json.dumps(same, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big")


def _distribute(local: Engine, cfg: Config, federation: Federation, model: FlatModel,
                dist: DistInfo) -> Engine:
    from .dist.collectives import Collectives
    from .dist.engine import DistributedEngine, split_by_load

    n = federation.num_clients
    home = None
    if cfg.data.partition == "local":
        home = np.arange(n) // (n // dist.world_size)
    elif cfg.algorithm.name in CLIENT_STATE:  # a client's state stays on the rank training it
        home = split_by_load(federation.train_sizes(), dist.world_size)
    eval_sizes = np.array([len(i) for i in federation.eval_idx])
    engine = DistributedEngine(local, Collectives(dist), federation.train_sizes(), eval_sizes,
                               home)
    engine.check_same([_fingerprint(cfg), model.numel, int(model.channels_last)],
                      "configuration, model size and run.memory_format")
    return engine


def model_init(cfg: Config, ctx: RunContext) -> ModelInit:
    """The run's initial model, and fresh ones of the same layout for methods that
    start from several random models (IFCA)."""
    ds = ctx.federation.dataset
    spec = ModelSpec(ds.input_shape, ds.num_classes)
    layout = ctx.model.channels_last  # the same layout as the run's vectors

    def fresh(seed: int) -> torch.Tensor:
        return FlatModel(build_model(spec, cfg.model, seed).to(ctx.device), layout).vector()

    layers = tuple(weight_layers(ctx.model.slots))  # refine's signatures, per matrix
    return ModelInit(ctx.model.vector(), fresh, cfg.seed, layers,
                     len(ctx.federation.train_idx), cfg.rounds, cfg.client.local_epochs)


def build(cfg: Config, run_dir: Path | None = None, dist: DistInfo | None = None) -> Run:
    """Every part of the run ``cfg`` describes; ``dist`` spreads it over a process group."""
    if cfg.mode == "centralized":
        if dist is not None:
            raise ConfigError('mode = "centralized" trains in one process; run it without '
                              "torchrun or --nproc")
        from .engines.pooled import PooledRounds

        cfg = dataclasses.replace(cfg, cluster=dataclasses.replace(cfg.cluster, k=1))
        ctx = build_context(cfg, run_dir, parallel_clients=False)
        return Run(ctx, PooledRounds(cfg, ctx), LocalAggregator(), run_dir is not None)
    from .loop import FederatedRounds

    ctx, engine = prepare(cfg, run_dir, dist)
    aggregator: Aggregator = LocalAggregator()
    if dist is not None:
        from .dist.engine import RankAggregator

        aggregator = RankAggregator(engine.comm)
    c = cfg.cluster.for_rounds(cfg.rounds)
    space = PointSpace(c.features, c.reduce, c.metric, c.sketch_dim, key_seed(cfg.seed, SKETCH))
    s = cfg.server
    optimizer = ServerOpt(s.optimizer, s.momentum, s.beta1, s.beta2, s.tau, ctx.model.num_params)
    server = Server(build_method(c), s.lr, space, aggregator, cfg.seed, c.k_max, c.n_init,
                    optimizer)
    if cfg.server.aggregator != "mean":  # a robust rule per cluster (fl/robust.py)
        server = dataclasses.replace(server, rule=Rule(cfg.server.aggregator, cfg.server.trim,
                                                       cfg.server.byzantine, cfg.server.mixing))
    server = dataclasses.replace(server, privacy=Privacy.of(cfg))  # None unless [privacy]
    held = engine.held() if dist is not None else None  # type: ignore[attr-defined]
    hooks = build_hooks(cfg, ctx.model, ctx.federation.train_sizes(), run_dir, held)
    rounds = FederatedRounds(cfg, ctx.federation, engine, server, model_init(cfg, ctx), hooks)
    writes = run_dir is not None and (dist is None or dist.is_main)
    return Run(ctx, rounds, aggregator, writes)
