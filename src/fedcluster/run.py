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

import numpy as np
import torch

from .callbacks.base import Callback, CallbackList
from .config import Config
from .data import build_augment, build_federation, load_dataset
from .engines import Engine, SequentialEngine
from .fl.clustering import PointSpace, agreement, build_method
from .fl.evaluate import EvalStats
from .fl.flat import FlatModel
from .fl.sampling import sample_clients
from .fl.server import ClusterServer
from .models import ModelSpec, build_model
from .results import ClientResult, ClusterResult, RoundResult, RunContext, RunSummary
from .rng import INIT, SKETCH, key_seed

__all__ = ["build_context", "build_server", "initial_models", "prepare", "resolve_device",
           "run_federation"]

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


def initial_models(cfg: Config, ctx: RunContext, restart: int = 0) -> torch.Tensor:
    """The starting cluster models ``[K, D]``: ``k`` copies of the run's initial model
    (one copy when k is discovered: ``k = "auto"`` or CFL, where clusters open as they
    are found), or for IFCA ``k`` independent random initialisations (another set for
    each restart)."""
    if cfg.cluster.method != "ifca":
        copies = 1 if cfg.cluster.k == "auto" or cfg.cluster.method == "cfl" else cfg.cluster.k
        return ctx.model.vector().unsqueeze(0).repeat(int(copies), 1)
    ds = ctx.federation.dataset
    spec = ModelSpec(ds.input_shape, ds.num_classes)
    seeds = [key_seed(cfg.seed, INIT, restart, i) for i in range(int(cfg.cluster.k))]
    return torch.stack([FlatModel(build_model(spec, cfg.model, s).to(ctx.device)).vector()
                        for s in seeds])


def build_server(cfg: Config, ctx: RunContext, initial: torch.Tensor) -> ClusterServer:
    c = cfg.cluster
    space = PointSpace(c.features, c.reduce, c.metric, c.sketch_dim, key_seed(cfg.seed, SKETCH))
    return ClusterServer(initial, ctx.federation.num_clients, cfg.server.lr, build_method(c),
                         space, c.k_max, c.n_init, cfg.seed)


def _evaluate(engine: Engine, server: ClusterServer) -> tuple[list[ClusterResult],
                                                             EvalStats, dict[int, float]]:
    """Each cluster model on each member's eval set: per-cluster results, the pooled
    total, and each evaluated client's accuracy."""
    clusters, total, per_client = [], EvalStats(), {}
    for i in range(server.k):
        members = server.members(i).tolist()
        stats = engine.evaluate_clients(server.models[i], members) if members else []
        pooled = sum(stats, EvalStats())
        total = total + pooled
        per_client.update({c: s.accuracy for c, s in zip(members, stats, strict=True) if s.n})
        clusters.append(ClusterResult(i, members, pooled.accuracy, pooled.top5, pooled.loss,
                                      pooled.n))
    return clusters, total, per_client


def _fairness(per_client: dict[int, float]) -> dict[str, float]:
    if not per_client:
        return {}
    acc = np.array(list(per_client.values()))
    return {"mean": float(acc.mean()), "p10": float(np.percentile(acc, 10)),
            "min": float(acc.min())}


def _round(r: int, cfg: Config, engine: Engine, server: ClusterServer, truth: np.ndarray,
           callbacks: CallbackList) -> RoundResult:
    t0 = time.perf_counter()
    sampled = sample_clients(server.assignment.size, cfg.clients_per_round, cfg.seed, r)
    callbacks.round_start(r, sampled.tolist())
    starts = server.assign(r, sampled, engine.client_losses)
    jobs = [(int(c), server.models[s]) for c, s in zip(sampled, starts, strict=True)]
    updates = []
    for update in engine.train(r, jobs):
        updates.append(update)
        callbacks.client_done(r, update)
    info = server.step(updates, cfg.seed, r)
    clusters, total, per_client = _evaluate(engine, server)
    clients = [
        ClientResult(u.client, int(info.clusters[j]), u.train_loss, u.num_examples, u.steps,
                     None if info.coords is None else tuple(info.coords[j].tolist()),
                     per_client.get(u.client))
        for j, u in enumerate(updates)
    ]
    placed = server.assignment >= 0
    ari = nmi = None
    if placed.sum() >= 2:
        ari, nmi = agreement(truth[placed], server.assignment[placed])
    return RoundResult(r, total.accuracy, total.top5, total.loss, clusters, clients,
                       time.perf_counter() - t0, info.sse, info.empty, ari, nmi,
                       _fairness(per_client), info.diagnostics)


def choose_ifca_restart(cfg: Config, ctx: RunContext, engine: Engine) -> int:
    """IFCA's random restarts: run each initialisation for ``cluster.restart_rounds``
    rounds and keep the one with the lowest training loss (each client's loss under
    its best model, weighted by training-set size)."""
    rounds = min(cfg.cluster.restart_rounds, cfg.rounds)
    everyone = list(range(ctx.federation.num_clients))
    sizes = torch.from_numpy(ctx.federation.train_sizes()).double()
    quiet, scores = CallbackList([]), []
    for restart in range(cfg.cluster.restarts):
        server = build_server(cfg, ctx, initial_models(cfg, ctx, restart))
        for r in range(1, rounds + 1):
            _round(r, cfg, engine, server, ctx.federation.groups, quiet)
        best = engine.client_losses(server.models, everyone).min(dim=1).values
        scores.append(float(sizes @ best / sizes.sum()))
    chosen = int(np.argmin(scores))
    log.info("IFCA restarts: training loss after %d rounds %s; using restart %d", rounds,
             [round(s, 4) for s in scores], chosen)
    return chosen


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
    restart = 0
    if cfg.cluster.method == "ifca" and cfg.cluster.restarts > 1:
        restart = choose_ifca_restart(cfg, ctx, engine)
    server = build_server(cfg, ctx, initial_models(cfg, ctx, restart))
    cbs = CallbackList(callbacks)
    rounds: list[RoundResult] = []
    t0 = time.perf_counter()
    stopped = False
    cbs.run_start(ctx)
    try:
        for r in range(1, cfg.rounds + 1):
            result = _round(r, cfg, engine, server, ctx.federation.groups, cbs)
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

