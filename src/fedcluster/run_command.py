"""The ``run`` command: one run in this process, a sweep of runs, a launch of workers
through torchrun (``--nproc``/``--nnodes``), or one rank of such a launch; and the run
directory each of them writes."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config, ConfigError, load_config
from .rundir import RunDir, held_by_launcher, new_run, resume_run
from .signals import stop_on_signals

if TYPE_CHECKING:
    from .fl.state import RunState
    from .sweep import Combination

__all__ = ["run_command"]

log = logging.getLogger("fedcluster")


def _run_dir(cfg: Config, out: str | None) -> RunDir:
    """A new run's directory, created, checked writable and locked before any training:
    ``--out``, or a new ``<run.out>/<name>-<time>``."""
    return new_run(out, cfg.run.out, cfg.name)


@contextmanager
def _launch_run_dir(cfg: Config, args: argparse.Namespace) -> Iterator[Path | None]:
    """The directory the workers of a launch write, held while they run.

    On one machine this launcher opens and holds it, and tells its workers so. Over
    several machines global rank 0 opens it, wherever it runs (so that launchers sharing
    a file system do not contend for one ``--out``): None here without ``--out``.
    """
    if (args.nnodes or 1) > 1:
        out = args.resume or args.out
        yield Path(out) if out is not None else None
        return
    opened = resume_run(args.resume) if args.resume else _run_dir(cfg, args.out)
    with opened as held:
        yield held.lend_to_workers()


def _worker_run_dir(cfg: Config, out: str | None, resume: bool = False) -> Path:
    """A torchrun rank's run directory. Rank 0 writes into the one its launcher holds,
    or (under a torchrun started by hand, or over several machines) opens one itself
    and holds it until the process ends. The other ranks write nothing: theirs is unused.
    """
    if os.environ.get("RANK") != "0":
        return Path(out if out is not None else cfg.run.out)
    if out is not None and held_by_launcher(out):
        return Path(out)
    held = resume_run(out) if resume else _run_dir(cfg, out)
    atexit.register(held.release)
    return held.path


def _run_overrides(args: argparse.Namespace, overrides: list[str]) -> list[str]:
    """``--centralized``, the reference's ``--gpu N`` (-1 = CPU) and ``--profile`` as config
    overrides."""
    extra = []
    if getattr(args, "centralized", False):
        extra.append("mode=centralized")
    gpu = getattr(args, "gpu", None)
    if gpu is not None:
        extra.append("run.device=cpu" if gpu < 0 else f"run.device=cuda:{gpu}")
    if getattr(args, "profile", False):
        extra.append("run.profile=true")
    return [*overrides, *extra]


def _resumed(args: argparse.Namespace, path: str | None,
             overrides: list[str]) -> tuple[Config, RunState]:
    """The config and state a ``--resume`` continues from: the run directory's saved
    config (with the overrides a resume may make) and its last checkpoint."""
    from .checkpoint import load_checkpoint
    from .resume import resume_config

    if path is not None:
        raise ConfigError(f"--resume {args.resume}: the run continues with the config saved "
                          f"there; give overrides only (not {path!r})")
    if args.out is not None:
        raise ConfigError("--resume writes into the run's own directory; drop --out")
    start = load_checkpoint(Path(args.resume))
    cfg = resume_config(Path(args.resume), overrides, args.plugin, done=start.round)
    return cfg, start


def run_command(args: argparse.Namespace, path: str | None, overrides: list[str]) -> int:
    """``fedcluster run``: a sweep, a launch, one rank of a launch, or one run here."""
    from .callbacks import default_callbacks
    from .dist.group import launched
    from .loop import run_federation

    overrides = _run_overrides(args, overrides)
    if args.resume is None:
        from .sweep import combinations

        combos = combinations(path, overrides)
        if len(combos) > 1 or combos[0].label:
            return _run_sweep(args, path, combos)
    start = None
    if args.resume is not None:
        cfg, start = _resumed(args, path, overrides)
    else:
        cfg = load_config(path, overrides, plugins=args.plugin)
    from .preflight import check_device

    check_device(cfg.run.device)  # the launcher too: its workers would fall back to CPU
    if _launch_requested(args):
        return _launch(cfg, args, path, overrides)
    if launched():
        return _run_rank(cfg, args, start)
    opened = resume_run(args.resume) if start is not None else _run_dir(cfg, args.out)
    with opened as held, stop_on_signals():
        callbacks = default_callbacks(cfg, held.path, quiet=args.quiet, progress=args.progress)
        run_federation(cfg, callbacks, held.path, start=start)
    return 0


def _run_sweep(args: argparse.Namespace, path: str | None, combos: list[Combination]) -> int:
    """Every combination of a sweep, one after another, each in its own run directory
    inside one sweep directory (``--out``, or ``<run.out>/<name>-sweep-<time>``). Every
    combination's config is checked before the first run starts."""
    import json

    from .callbacks import default_callbacks
    from .compare import print_comparison
    from .dist.group import launched
    from .loop import run_federation
    from .preflight import check_device
    from .rundir import atomic_write
    from .sweep import SWEEP_FILE

    if _launch_requested(args) or launched():
        raise ConfigError("a sweep runs its combinations one after another in this process; "
                          "drop --nproc/--nnodes, or start each combination on its own")
    cfgs = [load_config(path, c.overrides, plugins=args.plugin) for c in combos]
    for cfg in cfgs:
        check_device(cfg.run.device)
    base = cfgs[0]
    with new_run(args.out, base.run.out, f"{base.name}-sweep") as sweep:
        atomic_write(sweep.path / SWEEP_FILE, json.dumps({
            "config": str(Path(path).resolve()) if path else None,
            "runs": [{"dir": c.label, "swept": c.swept, "overrides": c.overrides}
                     for c in combos]}, indent=1))
        for i, (combo, cfg) in enumerate(zip(combos, cfgs, strict=True), 1):
            log.info("sweep run %d of %d: %s", i, len(combos), combo.label)
            with new_run(sweep.path / combo.label, label="sweep run") as held, \
                    stop_on_signals():
                callbacks = default_callbacks(cfg, held.path, quiet=args.quiet,
                                              progress=args.progress)
                run_federation(cfg, callbacks, held.path)
        if not args.quiet:
            print_comparison([str(sweep.path)], sweep.path / "compare.html", 0.9)
    return 0


def _launch_requested(args: argparse.Namespace) -> bool:
    return any(v is not None for v in (args.nproc, args.nnodes, args.node_rank,
                                       args.rdzv_endpoint))


def _launch(cfg: Config, args: argparse.Namespace, path: str | None,
            overrides: list[str]) -> int:
    """Start the workers through torchrun; each runs this command without the launch flags."""
    from .dist.group import launched
    from .dist.launch import launch_workers, torchrun_args, worker_threads

    if launched():
        raise ConfigError("--nproc/--nnodes given, but this process already runs under "
                          "torchrun; drop the launch flags")
    if cfg.mode == "centralized":
        raise ConfigError('mode = "centralized" trains in one process; drop --nproc/--nnodes')
    nproc = args.nproc or 1
    with _launch_run_dir(cfg, args) as run_dir:
        where = "--resume" if args.resume else "--out"
        worker = ["run", *([path] if path else []), *overrides,
                  *([where, str(run_dir)] if run_dir is not None else [])]
        worker += [f"--plugin={p}" for p in args.plugin]
        worker += ["--quiet"] * args.quiet + ["--verbose"] * args.verbose
        worker += ["--progress", args.progress]
        torchrun = torchrun_args(nproc, worker, args.nnodes or 1, args.node_rank,
                                 args.rdzv_endpoint, cfg.run.timeout_s)
        launch_workers(torchrun, worker_threads(nproc))
    return 0


def _run_rank(cfg: Config, args: argparse.Namespace, start: RunState | None) -> int:
    """One rank of a torchrun launch: rank 0 writes and prints, the others only compute.
    A SIGTERM (torchrun sends it to every worker when one fails or the launcher is
    stopped) stops each rank at a consistent point; rank 0 then writes the checkpoint,
    models and summary."""
    from .callbacks import default_callbacks
    from .dist.group import init_distributed, shutdown
    from .loop import run_federation

    run_dir = _worker_run_dir(cfg, args.resume or args.out, start is not None)
    info = init_distributed(cfg.run)
    done = False
    try:
        if not info.is_main:  # the other ranks report errors only
            log.setLevel(logging.ERROR)
        with stop_on_signals():
            if info.is_main:
                callbacks = default_callbacks(cfg, run_dir, quiet=args.quiet,
                                              progress=args.progress)
                run_federation(cfg, callbacks, run_dir, info, start)
            else:
                run_federation(cfg, [], None, info, start)
        done = True
    finally:
        shutdown(info, sync=done)
    return 0
