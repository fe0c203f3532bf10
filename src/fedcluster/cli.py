"""Command line: ``fedcluster run | validate | config | partition | report | compare |
datasets | models``.

The only module that reads argv; ``run`` itself is :mod:`fedcluster.run_command`.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from . import __version__
from .config import ConfigError, load_config
from .rundir import RunDirError
from .signals import Stopped

__all__ = ["main"]

log = logging.getLogger("fedcluster")


def _split_args(items: list[str]) -> tuple[str | None, list[str]]:
    """The first argument without '=' is the config file; the rest are overrides."""
    path = None
    overrides = []
    for item in items:
        if "=" not in item and path is None:
            path = item
        elif "=" not in item:
            raise ConfigError(f"unexpected argument {item!r}: expected section.key=value")
        else:
            overrides.append(item)
    return path, overrides


def _setup_logging(verbose: bool, quiet: bool) -> None:
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    handler = RichHandler(console=Console(stderr=True), show_time=False, show_path=False,
                          level=level)
    log.addHandler(handler)


def cmd_compare(args: argparse.Namespace) -> int:
    """Finished runs (or sweeps of them) side by side, from their files."""
    if not 0 < args.target <= 1:
        raise ConfigError(f"--target {args.target}: expected an accuracy in (0, 1]")
    html_path = args.html
    if html_path is None:  # a lone sweep directory holds its comparison
        single = Path(args.runs[0])
        sweep = len(args.runs) == 1 and not (single / "metrics.jsonl").exists()
        html_path = single / "compare.html" if sweep else Path("compare.html")
    from .compare import print_comparison

    print_comparison(args.runs, Path(html_path), args.target)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .run_command import run_command

    path, overrides = _split_args(args.config)
    _setup_logging(args.verbose, args.quiet)
    return run_command(args, path, overrides)


def _plots_every(run_dir: Path) -> int:
    """``plots.every`` from the run's saved config, else the default."""
    from .config import PlotsConfig

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    path = run_dir / "config.toml"
    if path.is_file():
        try:
            every = tomllib.loads(path.read_text(encoding="utf-8")).get("plots", {}).get("every")
            if isinstance(every, int) and every >= 0:
                return every
        except tomllib.TOMLDecodeError:
            pass
    return PlotsConfig().every


def cmd_report(args: argparse.Namespace) -> int:
    from .plots import draw_figures, write_report

    run_dir = Path(args.run_dir)
    if args.every is not None and args.every < 0:
        raise ConfigError(f"--every {args.every}: expected an integer >= 0 (0 = last round only)")
    every = args.every if args.every is not None else _plots_every(run_dir)
    try:
        files = draw_figures(run_dir, every)
        out = write_report(run_dir, files)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(str(e)) from None
    print(f"{len(files)} figures in {run_dir / 'figures'}; report: {out}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a config without torch; ``--build`` (or a CUDA device, which only torch can
    look for) also makes what a run makes first (see :mod:`fedcluster.preflight`)."""
    path, overrides = _split_args([args.file, *args.overrides])
    cfg = load_config(path, overrides, plugins=args.plugin)
    from .extras import check_extras

    check_extras(cfg)  # an enabled tracker's package is installed (not imported)
    built = ""
    if args.build:
        from .preflight import preflight

        found = preflight(cfg)
        built = (f"; built on {found.device}: samples {list(found.input_shape)}, "
                 f"{found.num_classes} classes, {found.parameters:,} parameters, "
                 f"{found.engine} engine")
    elif cfg.run.device.startswith("cuda"):
        from .preflight import check_device

        check_device(cfg.run.device)
    print(f"{path or 'defaults'}: ok ({cfg.name}: {cfg.data.dataset}, "
          f"{cfg.data.num_clients} clients, k={cfg.cluster.k}, {cfg.rounds} rounds{built})")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Print a config as TOML: the defaults, or a file with overrides, resolved."""
    path, overrides = _split_args(args.config)
    if args.defaults and (path or overrides):
        raise ConfigError("--defaults prints the built-in defaults; drop the config and "
                          "overrides, or drop --defaults to print them resolved")
    # the defaults are the code's own: no secrets from the environment in them
    cfg = load_config(path, overrides, environ={} if args.defaults else None,
                      plugins=args.plugin)
    data = cfg.to_dict()
    if args.defaults:
        data["name"] = ""  # the default: derived from the run
        print('# name = "": <dataset>-<method>-k<k> (e.g. digits-refine-k2); '
              "secrets come from the environment")
    import tomli_w

    print(tomli_w.dumps(data), end="")
    return 0


def cmd_partition(args: argparse.Namespace) -> int:
    from .data import build_federation, load_dataset

    path, overrides = _split_args(args.config)
    cfg = load_config(path, overrides, plugins=args.plugin)
    fed = build_federation(load_dataset(cfg.data), cfg.data, cfg.seed)
    train, test = fed.label_counts()
    table = Table(title=f"{cfg.data.dataset}: {cfg.data.partition} over {fed.num_clients} "
                        "clients (train / eval samples per label)")
    table.add_column("client", justify="right")
    for c in range(train.shape[1]):
        table.add_column(str(c), justify="right")
    table.add_column("train", justify="right", style="bold")
    table.add_column("eval", justify="right", style="bold")
    for i in range(fed.num_clients):
        cells = [f"{a}/{b}" for a, b in zip(train[i], test[i], strict=True)]
        table.add_row(str(i), *cells, str(train[i].sum()), str(test[i].sum()))
    Console().print(table)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .catalog import dataset_rows

    cfg = load_config(None, [f"data.root={args.root}"], plugins=args.plugin)
    table = Table(title=f"datasets (data.root = {cfg.data.root})")
    for col in ("name", "present", "size"):
        table.add_column(col, no_wrap=True)
    table.add_column("expected at", overflow="fold")
    table.add_column("description", overflow="fold")
    for row in dataset_rows(cfg.data):
        table.add_row(*row)
    Console().print(table)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .catalog import model_rows

    load_config(None, [], plugins=args.plugin)
    table = Table(title="models")
    for col in ("name", "description"):
        table.add_column(col)
    for row in model_rows():
        table.add_row(*row)
    Console().print(table)
    return 0


def _plugin_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                   help="a Python file or module registering datasets/models (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fedcluster",
                                description="Clustered federated learning for PyTorch. "
                                            "Options and section.key=value overrides may "
                                            "come in any order.")
    p.add_argument("--version", action="version", version=f"fedcluster {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train a federation (default: the embedded digits config)")
    r.add_argument("config", nargs="*", metavar="[CONFIG] [section.key=value ...]",
                   help="a TOML/JSON config file and/or overrides")
    r.add_argument("--out", help="run directory (default: runs/<name>-<timestamp>)")
    r.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a stopped or killed run from its last checkpoint, with the "
                        "config saved there (overrides may extend rounds=)")
    r.add_argument("-q", "--quiet", action="store_true",
                   help="no console table, no progress, errors only")
    r.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    r.add_argument("--progress", choices=["auto", "bar", "lines", "off"], default="auto",
                   help="progress display: bars on a terminal, plain lines otherwise (auto)")
    r.add_argument("--centralized", action="store_true",
                   help="train one model on the pooled data (mode = \"centralized\")")
    r.add_argument("--gpu", type=int, metavar="N",
                   help="the reference's flag: run.device = cuda:N (-1: cpu)")
    _plugin_arg(r)
    d = r.add_argument_group("multi-process (through torch.distributed.run)")
    d.add_argument("--nproc", type=int, metavar="N", help="start N worker processes here")
    d.add_argument("--nnodes", type=int, metavar="N", help="number of machines taking part")
    d.add_argument("--node-rank", type=int, metavar="R",
                   help="this machine's rank (0 writes the run directory)")
    d.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                   help="rendezvous address: node 0's address, reachable from every node")
    r.add_argument("--profile", action="store_true",
                   help="per-round seconds of train/eval/aggregate/cluster/io into metrics.jsonl")
    r.set_defaults(func=cmd_run)
    v = sub.add_parser("validate", help="check a config file without running it")
    v.add_argument("file")
    v.add_argument("overrides", nargs="*", metavar="section.key=value")
    v.add_argument("--build", action="store_true",
                   help="also load the data, build the model on the run's device, pass two "
                        "samples through it and choose the engine (imports torch)")
    _plugin_arg(v)
    v.set_defaults(func=cmd_validate)
    c = sub.add_parser("config", help="print a config resolved as TOML (--defaults: the "
                                      "built-in defaults)")
    c.add_argument("config", nargs="*", metavar="[CONFIG] [section.key=value ...]")
    c.add_argument("--defaults", action="store_true", help="print every key's default")
    _plugin_arg(c)
    c.set_defaults(func=cmd_config)
    t = sub.add_parser("partition", help="print per-client label counts (train and eval)")
    t.add_argument("config", nargs="*", metavar="[CONFIG] [section.key=value ...]")
    _plugin_arg(t)
    t.set_defaults(func=cmd_partition)
    rep = sub.add_parser("report", help="redraw a run's figures and write its report.html")
    rep.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (finished or running)")
    rep.add_argument("--every", type=int, default=None, metavar="N",
                     help="per-round cluster figures every N rounds plus the last "
                          "(default: the run's plots.every)")
    rep.set_defaults(func=cmd_report)
    cmp = sub.add_parser("compare", help="finished runs or sweeps side by side: a table "
                                         "(mean ± std over seeds) and compare.html")
    cmp.add_argument("runs", nargs="+", metavar="RUN_OR_SWEEP")
    cmp.add_argument("--target", type=float, default=0.9, metavar="ACC",
                     help="the accuracy whose first round is reported (default 0.9)")
    cmp.add_argument("--html", metavar="FILE",
                     help="where to write the page (default: compare.html in the sweep "
                          "directory when comparing one sweep, else here)")
    cmp.set_defaults(func=cmd_compare)
    d = sub.add_parser("datasets", help="list datasets, whether present under the root, size")
    d.add_argument("--root", default="data", help="the data root to look in (default: data)")
    _plugin_arg(d)
    d.set_defaults(func=cmd_datasets)
    m = sub.add_parser("models", help="list the registered models")
    _plugin_arg(m)
    m.set_defaults(func=cmd_models)
    return p


# Errors that end a command with a message rather than a traceback, by module: each is
# looked up only once its module is imported (a module not imported cannot have raised),
# so that handling them never imports torch. Exit status 2: the input; 1: the run.
_INPUT_ERRORS = ("fedcluster.data.files:DataError", "fedcluster.data.partition:PartitionError",
                 "fedcluster.checkpoint:CheckpointError")
_RUN_ERRORS = ("fedcluster.dist.collectives:DistributedError",
               "fedcluster.dist.launch:LaunchError", "fedcluster.fl.validate:TooFewUpdates")
# Commands that need no torch: no start-up work ahead of them.
_LIGHT_COMMANDS = frozenset({"validate", "report", "config", "compare"})
# Commands taking overrides: arguments left over between options are theirs (the list
# named here), so that options and overrides may come in any order.
_STRAY_INTO = {"run": "config", "partition": "config", "validate": "overrides",
               "config": "config"}


def _imported(errors: tuple[str, ...]) -> tuple[type[BaseException], ...]:
    """The classes named ``module:Class`` in ``errors`` whose modules are imported."""
    found = []
    for ref in errors:
        module, _, name = ref.partition(":")
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


def import_with_gc_paused() -> None:
    """Import torch and the package's public modules with the garbage collector paused,
    then leave what they made out of its sight (``gc.freeze``).

    The import makes a few hundred thousand objects that live as long as the process;
    with the collector running, Python walks them again and again while they are made
    (0.35 s of a 1.9 s start on a 2-core machine) and in its later full passes. It
    changes the whole process, so only a process that is fedcluster's own calls it:
    ``fedcluster`` (:func:`main` reading ``sys.argv``) and the benchmarks.
    """
    import fedcluster

    collecting = gc.isenabled()
    gc.disable()
    try:
        for name in fedcluster.__all__:
            getattr(fedcluster, name)
    finally:
        if collecting:
            gc.freeze()
            gc.enable()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with options and overrides in any order: ``argparse`` gives a
    ``nargs="*"`` positional only the words before the first option, so the words left
    over after options join it (unknown options stay an error)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    into = _STRAY_INTO.get(args.command)
    if extra and (into is None or any(a.startswith("-") for a in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        setattr(args, into, [*getattr(args, into), *extra])
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one command. ``argv=None``, the executable's case, reads ``sys.argv``, and the
    process is fedcluster's own: a command that needs torch imports it first with the
    garbage collector paused (:func:`import_with_gc_paused`). A call with ``argv`` (a
    test, another program) changes nothing global beyond what its command does."""
    args = parse_args(argv)
    if argv is None and args.command not in _LIGHT_COMMANDS:
        import_with_gc_paused()
    try:
        return args.func(args)
    except (ConfigError, *_imported(_INPUT_ERRORS)) as e:
        print(f"fedcluster: error: {e}", file=sys.stderr)
        return 2
    except (RunDirError, *_imported(_RUN_ERRORS)) as e:
        print(f"fedcluster: error: {e}", file=sys.stderr)
        return 1
    except Stopped as e:
        if "RANK" not in os.environ:  # the launcher or a lone process speaks, not each rank
            print(f"fedcluster: {e}; the checkpoint of the last finished round is kept "
                  "(fedcluster run --resume RUN_DIR continues it)", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("fedcluster: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
