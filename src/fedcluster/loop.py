"""The round loop: the only one, for federated runs and the pooled baseline alike.

The federated round: sample clients (keyed by seed and round) -> each trains from its
cluster's model -> the server clusters the updates and aggregates each cluster ->
every cluster model is evaluated on its members' eval sets -> callbacks. The client
algorithm (SCAFFOLD, FedDyn, the personalised ones) joins in through its hooks
(fl/algorithm.py): before training, around the server step, and at evaluation, where
a personalised algorithm's own models are evaluated on their clients' eval sets too. Each round
is a function of the run state (fl/state.py) returning the next state; after it the
loop checks early stop, reports the round, and writes a checkpoint, so a run can be
stopped (signals.py) or killed and resumed from its last finished round.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .build import Run, build
from .callbacks.base import Callback, CallbackList
from .checkpoint import CheckpointError, save_checkpoint
from .config import Config
from .data.federation import Federation
from .engines import Engine
from .fl.algorithm import Hooks
from .fl.attack import attack_of
from .fl.client import LocalRule
from .fl.client_state import keep_held
from .fl.clustering import ModelInit, agreement
from .fl.evaluate import EvalStats
from .fl.sampling import sample_clients
from .fl.server import RoundUpdates, Server, StepInfo
from .fl.state import RunState, members, new_state, start_cluster
from .fl.validate import TooFewUpdates, Verdict, check_updates, screen
from .profiling import Profiler
from .records import ClientResult, ClusterResult, RoundResult, RunSummary
from .signals import Stopped, critical, shielded
from .stopping import early_stop

if TYPE_CHECKING:
    from .dist.group import DistInfo

__all__ = ["FederatedRounds", "drive", "early_stop", "initial_state", "run_federation"]

log = logging.getLogger(__name__)


class FederatedRounds:
    """The federated round (see the module docstring) of one run's parts."""

    def __init__(self, cfg: Config, federation: Federation, engine: Engine, server: Server,
                 start: ModelInit, hooks: Hooks | None = None) -> None:
        self.cfg, self.federation, self.engine, self.server = cfg, federation, engine, server
        self.start = start
        self.hooks = hooks or Hooks()  # the client algorithm's (fl/algorithm.py)
        self.attack = attack_of(cfg)  # simulated attackers (fl/attack.py); "none" by default
        self.restarts = getattr(server.method, "restarts", 1)
        self.restart_rounds = min(cfg.cluster.restart_rounds, cfg.rounds)

    def init(self, restart: int = 0) -> RunState:
        models, method_state = self.server.method.init(self.start, restart)
        return new_state(models, self.federation.num_clients, method_state)

    def held(self) -> np.ndarray | None:
        """The clients whose own state this process holds (None: every client's)."""
        held = getattr(self.engine, "held", None)
        return None if held is None else held()

    def whole(self, state: RunState) -> RunState | None:
        """``state`` with each client store whole, ``[N, D]``, for a checkpoint: gathered
        from the processes holding its rows (a collective: every process calls it at the
        same point; None on all but process 0)."""
        held = self.held()
        if held is None or not state.clients:
            return state
        gather = self.engine.gather_rows  # type: ignore[attr-defined]
        stores = {k: gather(t, held, f"client state {k!r}") for k, t in state.clients.items()}
        if any(t is None for t in stores.values()):
            return None
        return dataclasses.replace(state, clients=stores)

    def score(self, state: RunState) -> float:
        """The training loss: each client's loss under its best model, weighted by its
        training-set size (how IFCA's restarts are compared)."""
        everyone = list(range(self.federation.num_clients))
        sizes = torch.from_numpy(self.federation.train_sizes()).double()
        best = self.engine.client_losses(state.models, everyone).min(dim=1).values
        return float(sizes @ best / sizes.sum())

    def __call__(self, state: RunState, round_: int, callbacks: CallbackList,
                 prof: Profiler) -> tuple[RunState, RoundResult]:
        cfg, engine, server = self.cfg, self.engine, self.server
        t0 = time.perf_counter()
        before, previous = state, state.assignment
        sampled = sample_clients(state.assignment.size, cfg.clients_per_round, cfg.seed, round_)
        with prof.section("io"):
            callbacks.round_start(round_, sampled.tolist())
        with prof.section("cluster"):  # IFCA places clients by their losses under each model
            state, starts = server.assign(state, round_, sampled, engine.client_losses)
        jobs = [(int(c), state.models[s]) for c, s in zip(sampled, starts, strict=True)]
        updates = RoundUpdates(len(jobs))
        begun = self.hooks.start(state, round_, engine, jobs, starts)
        state, jobs = begun.state, begun.jobs
        it = engine.train(round_, jobs, begun.corrections, _rule(begun.rule, state.method))
        while True:
            with prof.section("train"):
                update = next(it, None)
            if update is None:
                break
            # the engine's own copy can be freed now; a wrong-sized update is a failed one
            update = updates.add(self.attack(screen(update, state.models[0]), round_))
            with prof.section("io"):
                callbacks.client_done(round_, update)
        with prof.section("aggregate"):  # less the "cluster" sections inside the step
            verdict = self._validate(round_, updates)
            if verdict.kept >= cfg.server.min_clients:
                kept = updates if verdict.keep.all() else RoundUpdates.of(
                    [u for u, keep in zip(updates.updates, verdict.keep, strict=True) if keep])
                begins = [jobs[j][1] for j in np.flatnonzero(verdict.keep)]
                state, kept = self.hooks.before_step(state, round_, engine, kept, begins)
                state, info = server.step(state, round_, kept, previous, prof)
                state = self.hooks.after_step(state, kept, starts[verdict.keep], info.clusters)
            else:  # no model step: the state before this round's assignment
                self._too_few(round_, verdict)
                state, info = before, StepInfo(starts[verdict.keep], None, None, [])
        state = dataclasses.replace(state, round=round_)
        with prof.section("eval"):
            clusters, total, per_client = _evaluate(engine, state, cfg.run.eval_clients == "all")
            personal = None
            if self.hooks.personalised:  # each client's own model on its own eval set
                evaluated = sorted(per_client)
                personal = _evaluate_personal(engine, evaluated, self.hooks.personal(
                    state, round_, engine, evaluated))
        row = np.cumsum(verdict.keep) - 1  # an accepted update's row in the step's info
        clients = [
            ClientResult(u.client, int(info.clusters[row[j]] if keep else starts[j]),
                         u.train_loss, u.num_examples, u.steps,
                         None if info.coords is None or not keep
                         else tuple(info.coords[row[j]].tolist()),
                         per_client.get(u.client))
            for j, (u, keep) in enumerate(zip(updates.updates, verdict.keep, strict=True))
        ]
        ids = updates.clients
        truth, placed = self.federation.groups, state.assignment >= 0
        ari = nmi = None
        if placed.sum() >= 2 and truth.max(initial=0) > 0:  # only known groups (data.groups > 1)
            ari, nmi = agreement(truth[placed], state.assignment[placed])
        return state, RoundResult(
            round_, total.accuracy, total.top5, total.loss, clusters, clients,
            time.perf_counter() - t0, info.sse, info.empty, ari, nmi, _fairness(per_client),
            info.diagnostics, prof.pop(),
            rejected={int(ids[j]): why for j, why in verdict.reasons.items()},
            clipped=[int(ids[j]) for j in verdict.scale],
            skipped=verdict.kept < cfg.server.min_clients, attackers=self.attack.among(ids),
            privacy=None if server.privacy is None else server.privacy.record(state.extra),
            personal=None if personal is None else (per_client, *personal))

    def _validate(self, round_: int, updates: RoundUpdates) -> Verdict:
        """Which updates the server accepts (fl/validate.py), logged once per round; the
        clipped ones are scaled in place."""
        s = self.cfg.server
        # rules that select whole updates by how central they are would pick a zero one
        selects = s.aggregator in ("krum", "multi-krum", "bulyan")
        verdict = check_updates(updates.deltas, [u.error for u in updates.updates],
                                s.max_update_norm, s.clip_updates,
                                [u.steps for u in updates.updates] if selects else None)
        for j, factor in verdict.scale.items():
            updates.deltas[j].mul_(factor)
        ids = updates.clients
        if verdict.reasons:
            log.warning("round %d: left out %d of %d client update(s): %s", round_,
                        len(verdict.reasons), len(updates), "; ".join(
                            f"client {ids[j]}: {why}" for j, why in verdict.reasons.items()))
        if verdict.scale:
            log.info("round %d: clipped client update(s) %s to norm %g", round_,
                     [int(ids[j]) for j in verdict.scale], s.max_update_norm)
        return verdict

    def _too_few(self, round_: int, verdict: Verdict) -> None:
        s = self.cfg.server
        what = (f"round {round_}: {verdict.kept} client update(s) accepted, fewer than "
                f"server.min_clients = {s.min_clients}")
        if s.on_too_few == "abort":
            raise TooFewUpdates(f"{what} (server.on_too_few = \"abort\")")
        log.warning("%s: no model step this round (server.on_too_few = \"skip\")", what)


def _rule(rule: LocalRule | None, method: dict) -> LocalRule | None:
    """The round's training rule: the algorithm's, with the clustering method's local
    epochs while its state asks for them (refine's signature rounds: clustering/base.py)."""
    epochs = method.get("epochs")
    if epochs is None or (rule is not None and rule.epochs is not None):
        return rule
    return dataclasses.replace(rule or LocalRule(), epochs=int(epochs))


def _evaluate(engine: Engine, state: RunState, everyone: bool = False
              ) -> tuple[list[ClusterResult], EvalStats, dict[int, float]]:
    """Each cluster model on each member's eval set: per-cluster results, the pooled
    total, and each evaluated client's accuracy. With ``everyone`` (``run.eval_clients =
    "all"``) the clients not placed yet are evaluated too, on the model they would
    start from."""
    clusters, total, per_client = [], EvalStats(), {}
    unplaced = np.flatnonzero(state.assignment < 0).tolist() if everyone else []
    start = start_cluster(state, unplaced[0]) if unplaced else -1
    for i in range(state.k):
        ids = members(state, i).tolist()
        evaluated = ids + (unplaced if i == start else [])
        stats = engine.evaluate_clients(state.models[i], evaluated) if evaluated else []
        pooled = sum(stats, EvalStats())
        total = total + pooled
        per_client.update({c: s.accuracy for c, s in zip(evaluated, stats, strict=True)
                           if s.n})
        clusters.append(ClusterResult(i, ids, pooled.accuracy, pooled.top5, pooled.loss,
                                      pooled.n))
    return clusters, total, per_client


def _evaluate_personal(engine: Engine, clients: Sequence[int],
                       model_of: Callable[[int], torch.Tensor]
                       ) -> tuple[dict[int, float], EvalStats]:
    """Each client's own model on its own eval set, in one batched call (one collective
    under ``--nproc``): each accuracy, and the pooled stats."""
    stats = engine.evaluate_own(clients, model_of)
    return ({c: s.accuracy for c, s in zip(clients, stats, strict=True)},
            sum(stats, EvalStats()))


def _fairness(per_client: dict[int, float]) -> dict[str, float]:
    if not per_client:
        return {}
    acc = np.array(list(per_client.values()))
    return {"mean": float(acc.mean()), "p10": float(np.percentile(acc, 10)),
            "min": float(acc.min())}


def initial_state(run: Run) -> RunState:
    """The state before round 1. With several initial states to try (IFCA's random
    restarts), each plays ``restart_rounds`` rounds through the run's round function,
    silently, and the one with the lowest score starts the run from round 1."""
    rounds = run.rounds
    if rounds.restarts <= 1:
        return rounds.init(0)
    quiet, scores = CallbackList([]), []
    for restart in range(rounds.restarts):
        state = rounds.init(restart)
        for r in range(1, rounds.restart_rounds + 1):
            state, _ = rounds(state, r, quiet, Profiler())
        scores.append(rounds.score(state))
    chosen = int(np.argmin(scores))
    log.info("restarts: training loss after %d rounds %s; using restart %d",
             rounds.restart_rounds, [round(s, 4) for s in scores], chosen)
    return rounds.init(chosen)


def _check_resumable(run: Run, state: RunState) -> None:
    model, n = run.context.model, run.context.federation.num_clients
    if state.models.shape[1] != model.numel or state.assignment.shape != (n,):
        raise CheckpointError(
            f"the checkpoint holds {state.k} models of {state.models.shape[1]} values and "
            f"{state.assignment.size} clients; this config builds a model of {model.numel} "
            f"values and {n} clients")


def _on(state: RunState, device: torch.device) -> RunState:
    """``state`` with its tensors on ``device`` (a loaded checkpoint is on the CPU)."""
    def moved(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: t.to(device) for k, t in tensors.items()}

    return dataclasses.replace(state, models=state.models.to(device),
                               server_opt=moved(state.server_opt), clients=moved(state.clients),
                               extra=moved(state.extra))


def _save(run: Run, state: RunState, every: int, last: bool) -> None:
    if not (last or state.round % every == 0):
        return
    whole = getattr(run.rounds, "whole", None)
    full = whole(state) if whole is not None else state  # every process, alike
    run_dir = run.context.run_dir
    if run.writes and run_dir is not None and full is not None:
        with critical():
            save_checkpoint(run_dir, full)


def drive(run: Run, state: RunState, callbacks: Sequence[Callback] = ()) -> RunSummary:
    """Play rounds from ``state`` to the config's last round or an early stop,
    checkpointing after each (``run.checkpoint_every``), reporting through
    ``callbacks``. On an error or a :class:`~fedcluster.signals.Stopped` the last
    finished round's state is checkpointed and ``on_run_end`` still runs."""
    cfg = run.config
    _check_resumable(run, state)
    held = getattr(run.rounds, "held", None)
    state = _on(keep_held(state, held() if held is not None else None), run.context.device)
    ctx = dataclasses.replace(run.context, start_round=state.round)
    cbs = CallbackList(callbacks)
    prof = Profiler(cfg.run.profile, ctx.device)
    every = cfg.run.checkpoint_every
    results: list[RoundResult] = []
    t0 = time.perf_counter()
    reason = "completed"
    cbs.run_start(ctx)
    try:
        for r in range(state.round + 1, cfg.rounds + 1):
            played, result = run.rounds(state, r, cbs, prof)
            stop_state, stop = early_stop(played.stop, result, cfg.stop)
            played = dataclasses.replace(played, stop=stop_state)
            with prof.section("io"):  # charged to the next round's record
                stop = cbs.round_end(result) or stop
                # the round counts once it is recorded: a failed metrics write leaves the
                # state (and so the checkpoint a resume starts from) one round earlier
                state = played
                results.append(result)
                stop = run.aggregator.any(stop)  # every process stops together
                _save(run, state, every, stop or r == cfg.rounds)
            if stop:
                reason = "early-stop" if r < cfg.rounds else reason
                break
    except BaseException as e:
        with shielded():  # a signal now (torchrun stopping the ranks) cuts nothing short
            cause = _cause(run, e)
            stopped = isinstance(cause, Stopped)
            reason = cause.name if stopped else "KeyboardInterrupt" if isinstance(
                cause, KeyboardInterrupt) else "error"
            if not stopped:
                run.aggregator.failed(cause)
            _final_save(run, state)
            error = None if stopped else f"{type(cause).__name__}: {cause}"
            cbs.run_end(RunSummary(ctx, results, state.models, time.perf_counter() - t0,
                                   error=error, reason=reason, round=state.round))
        if cause is e:
            raise
        raise cause from e
    summary = RunSummary(ctx, results, state.models, time.perf_counter() - t0,
                         reason == "early-stop", reason=reason, round=state.round)
    cbs.run_end(summary)
    return summary


def _cause(run: Run, e: BaseException) -> BaseException:
    """Why the run ends: ``e``, unless it is a stop signal that torchrun sent because
    another process died; then the error naming that process."""
    if isinstance(e, Stopped):
        try:
            run.aggregator.stopped()
        except Exception as lost:
            return lost
    return e


def _final_save(run: Run, state: RunState) -> None:
    """The checkpoint of the last finished round, after a failure or a stop; a failure
    to write it (the disk may be what failed, or a signal came meanwhile) is logged, not
    raised over the first. When the processes hold their clients' state apart, gathering
    it is a collective the other processes may never join now: the last regular
    checkpoint stands."""
    held = getattr(run.rounds, "held", None)
    if state.clients and held is not None and held() is not None:
        if run.writes:
            log.warning("not checkpointing round %d: its client state is spread over the "
                        "processes; --resume continues from the last regular checkpoint",
                        state.round)
        return
    try:
        _save(run, state, 1, True)
    except BaseException:
        log.exception("could not write the checkpoint of round %d", state.round)


def run_federation(cfg: Config, callbacks: Sequence[Callback] = (),
                   run_dir: Path | None = None, dist: DistInfo | None = None,
                   start: RunState | None = None) -> RunSummary:
    """Run ``cfg`` to the end (or an early stop), reporting through ``callbacks``.

    ``start`` continues a run from its saved state (see
    :func:`~fedcluster.checkpoint.load_checkpoint`). ``mode = "centralized"`` trains one
    model on the pooled data instead (engines/pooled.py). In a multi-process run
    (``dist`` given) every rank calls this with the same config; only rank 0 should be
    handed callbacks that write or print.
    """
    run = build(cfg, run_dir, dist)
    state = start if start is not None else initial_state(run)
    return drive(run, state, callbacks)
