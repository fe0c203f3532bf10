"""Build everything a config describes and run the federated rounds.

The round: sample clients (keyed by seed and round) -> each trains from its
cluster's model -> the server clusters the updates and aggregates each cluster
-> every cluster model is evaluated on its members' eval sets -> callbacks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .callbacks.base import Callback, CallbackList
from .config import Config
from .data import build_augment, build_federation, load_dataset
from .engines import Engine, SequentialEngine
from .fl.evaluate import EvalStats
from .fl.flat import FlatModel
from .fl.sampling import sample_clients
from .fl.server import ClusterServer
from .models import ModelSpec, build_model
from .results import ClientResult, ClusterResult, RoundResult, RunContext, RunSummary
from .rng import INIT, key_seed

__all__ = ["build_context", "prepare", "resolve_device", "run_federation"]

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"run.device = {name!r} but CUDA is not available on this machine")
    return torch.device(name)


def build_context(cfg: Config, run_dir: Path | None = None) -> RunContext:
    """Load data, partition it and build the model on its device; no engine, no training."""
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    device = resolve_device(cfg.run.device)
    dataset = load_dataset(cfg.data)
    federation = build_federation(dataset, cfg.data, cfg.seed)
    spec = ModelSpec(dataset.input_shape, dataset.num_classes)
    module = build_model(spec, cfg.model, key_seed(cfg.seed, INIT)).to(device)
    return RunContext(cfg, run_dir, federation, FlatModel(module), device)


def prepare(cfg: Config, run_dir: Path | None = None) -> tuple[RunContext, Engine]:
    """Load data, partition it, build the model and the engine; no training yet."""
    ctx = build_context(cfg, run_dir)
    dataset = ctx.federation.dataset
    augment = build_augment(dataset.augmentation, dataset.mean, dataset.std, cfg.data.augment)
    engine = SequentialEngine(ctx.federation, ctx.model, cfg.client, cfg.seed,
                              cfg.run.eval_batch_size, augment)
    return ctx, engine


def _round(r: int, cfg: Config, engine: Engine, server: ClusterServer,
           callbacks: CallbackList) -> RoundResult:
    t0 = time.perf_counter()
    sampled = sample_clients(server.assignment.size, cfg.clients_per_round, cfg.seed, r)
    callbacks.round_start(r, sampled.tolist())
    jobs = [(int(c), server.models[server.start_cluster(int(c))]) for c in sampled]
    updates = []
    for update in engine.train(r, jobs):
        updates.append(update)
        callbacks.client_done(r, update)
    info = server.step(updates, cfg.seed, r)

    clusters, total = [], EvalStats()
    for i in range(server.k):
        members = server.members(i)
        stats = engine.evaluate(server.models[i], members.tolist())
        total = total + stats
        clusters.append(ClusterResult(i, members.tolist(), stats.accuracy, stats.top5,
                                      stats.loss, stats.n))
    clients = [
        ClientResult(u.client, int(info.clusters[j]), u.train_loss, u.num_examples, u.steps,
                     None if info.coords is None else tuple(info.coords[j].tolist()))
        for j, u in enumerate(updates)
    ]
    return RoundResult(r, total.accuracy, total.top5, total.loss, clusters, clients,
                       time.perf_counter() - t0, info.sse, info.empty)


def run_federation(cfg: Config, callbacks: Sequence[Callback] = (),
                   run_dir: Path | None = None) -> RunSummary:
    """Run ``cfg`` to the end (or an early stop), reporting through ``callbacks``.

    ``mode = "centralized"`` trains one model on the pooled data instead (see
    :mod:`fedcluster.centralized`).
    """
    if cfg.mode == "centralized":
        from .centralized import run_centralized

        return run_centralized(cfg, callbacks, run_dir)
    ctx, engine = prepare(cfg, run_dir)
    server = ClusterServer(ctx.model.vector(), cfg.cluster.k, ctx.federation.num_clients,
                           cfg.server.lr, cfg.cluster.reduce, cfg.cluster.n_init)
    cbs = CallbackList(callbacks)
    rounds: list[RoundResult] = []
    t0 = time.perf_counter()
    stopped = False
    cbs.run_start(ctx)
    try:
        for r in range(1, cfg.rounds + 1):
            result = _round(r, cfg, engine, server, cbs)
            rounds.append(result)
            if cbs.round_end(result):
                stopped = r < cfg.rounds
                break
    except BaseException as e:
        cbs.run_end(RunSummary(ctx, rounds, server.models, time.perf_counter() - t0,
                               error=f"{type(e).__name__}: {e}"))
        raise
    summary = RunSummary(ctx, rounds, server.models, time.perf_counter() - t0, stopped)
    cbs.run_end(summary)
    return summary

