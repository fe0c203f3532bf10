"""Build everything a config describes and run the federated rounds.

The round: sample clients (keyed by seed and round) -> each trains from its
cluster's model -> the server clusters the updates and aggregates each cluster
-> every cluster model is evaluated on its members' eval sets -> callbacks.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .callbacks.base import Callback, CallbackList
from .config import Config, ConfigError
from .data import build_augment, build_federation, load_dataset
from .data.federation import Federation
from .dist.collectives import Collectives, DistributedError
from .dist.engine import DistributedEngine
from .dist.group import DistInfo
from .engines import Engine, make_engine
from .engines.tuning import (
    choose_threads,
    choose_workers,
    process_cores,
    step_flops,
    use_channels_last,
)
from .fl.client import Update
from .fl.clustering import PointSpace, agreement, build_method
from .fl.evaluate import EvalStats
from .fl.flat import FlatModel
from .fl.sampling import sample_clients
from .fl.server import ClusterServer
from .models import ModelSpec, build_model
from .profiling import Profiler
from .records import ClientResult, ClusterResult, RoundResult, RunContext, RunSummary
from .rng import INIT, SKETCH, key_seed

__all__ = ["build_context", "build_server", "initial_models", "plan_threads", "prepare",
           "resolve_device", "run_federation"]

log = logging.getLogger(__name__)


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
    :func:`plan_threads`).
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


def plan_threads(cfg: Config, model: FlatModel, spec: ModelSpec, device: torch.device,
                 parallel_clients: bool = True) -> tuple[int, int]:
    """``(torch threads, workers)``: ``run.threads`` and ``run.workers`` where set, else
    chosen from the model's cost per training step. Workers (clients trained at once, in
    threads) apply to the sequential engine on CPU; they share this process's cores."""
    run, cores = cfg.run, process_cores()
    flops = functools.cache(lambda: step_flops(model, spec.input_shape, cfg.client.batch_size))
    if not (parallel_clients and device.type == "cpu" and run.engine != "vmap"):
        workers = 1
    elif run.workers or run.threads:
        workers = run.workers or max(1, cores // run.threads)
    else:
        workers = choose_workers(flops(), cores)
    if run.threads:
        threads = run.threads
    elif device.type != "cpu":
        threads = torch.get_num_threads()
    elif workers > 1:
        threads = max(1, cores // workers)
    else:
        threads = choose_threads(flops(), cores)
    return threads, workers


def prepare(cfg: Config, run_dir: Path | None = None,
            dist: DistInfo | None = None) -> tuple[RunContext, Engine]:
    """Load data, partition it, build the model and the engine; no training yet.

    With ``dist`` the engine is distributed over the process group's ranks.
    """
    ctx = build_context(cfg, run_dir, dist)
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
    for local in ("run", "plots", "tensorboard", "notify"):
        same.pop(local, None)
    text = json.dumps(same, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big")


def _distribute(local: Engine, cfg: Config, federation: Federation, model: FlatModel,
                dist: DistInfo) -> DistributedEngine:
    n = federation.num_clients
    home = None
    if cfg.data.partition == "local":
        home = np.arange(n) // (n // dist.world_size)
    eval_sizes = np.array([len(i) for i in federation.eval_idx])
    engine = DistributedEngine(local, Collectives(dist), federation.train_sizes(), eval_sizes,
                               home)
    engine.check_same([_fingerprint(cfg), model.numel, int(model.channels_last)],
                      "configuration, model size and run.memory_format")
    return engine


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
    layout = ctx.model.channels_last  # the same layout as the run's vectors
    return torch.stack([FlatModel(build_model(spec, cfg.model, s).to(ctx.device), layout).vector()
                        for s in seeds])


def build_server(cfg: Config, ctx: RunContext, initial: torch.Tensor) -> ClusterServer:
    c = cfg.cluster
    space = PointSpace(c.features, c.reduce, c.metric, c.sketch_dim, key_seed(cfg.seed, SKETCH))
    return ClusterServer(initial, ctx.federation.num_clients, cfg.server.lr, build_method(c),
                         space, c.k_max, c.n_init, cfg.seed)


def _evaluate(engine: Engine, server: ClusterServer, everyone: bool = False
              ) -> tuple[list[ClusterResult], EvalStats, dict[int, float]]:
    """Each cluster model on each member's eval set: per-cluster results, the pooled
    total, and each evaluated client's accuracy. With ``everyone`` (``run.eval_clients =
    "all"``) the clients not placed yet are evaluated too, on the model they would
    start from."""
    clusters, total, per_client = [], EvalStats(), {}
    unplaced = np.flatnonzero(server.assignment < 0).tolist() if everyone else []
    start = server.start_cluster(unplaced[0]) if unplaced else -1
    for i in range(server.k):
        members = server.members(i).tolist()
        evaluated = members + (unplaced if i == start else [])
        stats = engine.evaluate_clients(server.models[i], evaluated) if evaluated else []
        pooled = sum(stats, EvalStats())
        total = total + pooled
        per_client.update({c: s.accuracy for c, s in zip(evaluated, stats, strict=True)
                           if s.n})
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
           callbacks: CallbackList, prof: Profiler | None = None) -> RoundResult:
    reducer = engine if isinstance(engine, DistributedEngine) else None
    prof = prof or Profiler()
    t0 = time.perf_counter()
    sampled = sample_clients(server.assignment.size, cfg.clients_per_round, cfg.seed, r)
    with prof.section("io"):
        callbacks.round_start(r, sampled.tolist())
    with prof.section("cluster"):  # IFCA places clients by their losses under each model
        starts = server.assign(r, sampled, engine.client_losses)
    jobs = [(int(c), server.models[s]) for c, s in zip(sampled, starts, strict=True)]
    updates: list[Update] = []
    deltas: torch.Tensor | None = None  # [clients, D]: each update's delta lives in its row
    it = engine.train(r, jobs)
    while True:
        with prof.section("train"):
            update = next(it, None)
        if update is None:
            break
        if deltas is None:
            deltas = update.delta.new_empty((len(jobs), update.delta.numel()))
        deltas[len(updates)] = update.delta  # the engine's own copy can be freed now
        update = dataclasses.replace(update, delta=deltas[len(updates)])
        updates.append(update)
        with prof.section("io"):
            callbacks.client_done(r, update)
    with prof.section("aggregate"):  # less the "cluster" sections inside server.step
        info = server.step(updates, cfg.seed, r, reducer, deltas)
    with prof.section("eval"):
        clusters, total, per_client = _evaluate(engine, server,
                                                cfg.run.eval_clients == "all")
    clients = [
        ClientResult(u.client, int(info.clusters[j]), u.train_loss, u.num_examples, u.steps,
                     None if info.coords is None else tuple(info.coords[j].tolist()),
                     per_client.get(u.client))
        for j, u in enumerate(updates)
    ]
    placed = server.assignment >= 0
    ari = nmi = None
    if placed.sum() >= 2 and truth.max(initial=0) > 0:  # only known groups (data.groups > 1)
        ari, nmi = agreement(truth[placed], server.assignment[placed])
    return RoundResult(r, total.accuracy, total.top5, total.loss, clusters, clients,
                       time.perf_counter() - t0, info.sse, info.empty, ari, nmi,
                       _fairness(per_client), info.diagnostics, prof.pop())


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
                   run_dir: Path | None = None, dist: DistInfo | None = None) -> RunSummary:
    """Run ``cfg`` to the end (or an early stop), reporting through ``callbacks``.

    ``mode = "centralized"`` trains one model on the pooled data instead (see
    :mod:`fedcluster.centralized`). In a multi-process run (``dist`` given) every rank
    calls this with the same config; only rank 0 should be handed callbacks that write
    or print.
    """
    if cfg.mode == "centralized":
        if dist is not None:
            raise ConfigError('mode = "centralized" trains in one process; run it without '
                              "torchrun or --nproc")
        from .centralized import run_centralized

        return run_centralized(cfg, callbacks, run_dir)
    ctx, engine = prepare(cfg, run_dir, dist)
    reducer = engine if isinstance(engine, DistributedEngine) else None
    restart = 0
    if cfg.cluster.method == "ifca" and cfg.cluster.restarts > 1:
        restart = choose_ifca_restart(cfg, ctx, engine)
    server = build_server(cfg, ctx, initial_models(cfg, ctx, restart))
    cbs = CallbackList(callbacks)
    prof = Profiler(cfg.run.profile, ctx.device)
    server.profiler = prof
    rounds: list[RoundResult] = []
    # The objects made so far (torch's and the libraries' modules, mostly) live to the
    # end: the garbage collector need not walk them again, in the rounds nor at exit
    # (freezing them saves ~0.3 s of interpreter shutdown after importing torch).
    gc.freeze()
    t0 = time.perf_counter()
    stopped = False
    cbs.run_start(ctx)
    try:
        for r in range(1, cfg.rounds + 1):
            result = _round(r, cfg, engine, server, ctx.federation.groups, cbs, prof)
            rounds.append(result)
            with prof.section("io"):  # charged to the next round's record
                stop = cbs.round_end(result)
            if reducer is not None:  # every rank stops together
                stop = reducer.any(stop)
            if stop:
                stopped = r < cfg.rounds
                break
    except BaseException as e:
        error = f"{type(e).__name__}: {e}"
        if reducer is not None and not isinstance(e, DistributedError):
            reducer.comm.report_failure(error)  # so the other ranks can name this one
        cbs.run_end(RunSummary(ctx, rounds, server.models, time.perf_counter() - t0,
                               error=error))
        raise
    summary = RunSummary(ctx, rounds, server.models, time.perf_counter() - t0, stopped)
    cbs.run_end(summary)
    return summary

