"""Measure fedcluster, the bare loop and (optionally) Flower side by side on W1 and W2.

    python benchmarks/compare.py [--reps 3] [--workloads W1,W2]
                                 [--engines auto,sequential,vmap] [--threads N]
                                 [--flower-python /path/to/python] [--out results.json]

Every implementation runs in its own process, one at a time, alternating (rep 1 of
all, then rep 2 of all, ...), so slow drifts of the machine hit all alike. Wall time
is measured here (process start to exit, waited for exactly), peak memory as the largest sum of the
resident memory of the process and all its descendants (polled every 0.25 s: Ray's
worker processes count), FL time and accuracy as each program reports them. The table
shows medians; ratios are against the bare loop (and Flower, when it ran).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _descendants(pid: int) -> list[int]:
    """``pid`` and all its descendants, from the parent ids in /proc/*/stat (Linux)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MiB."""
    total = 0
    for p in _descendants(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def measure(cmd: list[str]) -> dict:
    """Run ``cmd`` (which prints one JSON line last), adding wall time and tree peak memory.

    Output goes to files, not pipes: a chatty child (Ray logs a lot) would block on a
    full pipe while we only poll."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        peak = 0.0
        done = threading.Event()

        def sample() -> None:  # memory every 0.25 s, beside the exact wait for the exit
            nonlocal peak
            while not done.wait(0.25):
                peak = max(peak, tree_rss_mb(proc.pid))

        sampler = threading.Thread(target=sample)
        sampler.start()
        proc.wait()
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["wall_s"], result["tree_peak_mb"] = round(wall, 3), round(peak, 1)
    return result


def commands(workload: str, engines: list[str], flower: str | None,
             threads: int) -> dict[str, list[str]]:
    py = sys.executable
    cmds = {"bare loop": [py, str(HERE / "bare_loop.py"), workload, "--json",
                          "--threads", str(threads or 2)]}
    for e in engines:
        cmds[f"fedcluster {e}"] = [py, str(HERE / "workloads.py"), workload, "--engine", e,
                                   "--json", "--threads", str(threads)]
    if flower:
        cmds["flower"] = [flower, str(HERE / "flower_sim.py"), workload, "--json"]
    return cmds


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--workloads", default="W1,W2")
    p.add_argument("--engines", default="auto")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads for the bare loop and fedcluster (0: bare loop 2, "
                        "fedcluster its own choice); Flower uses 1 per actor")
    p.add_argument("--flower-python", help="a python with flwr[simulation] installed")
    p.add_argument("--out", help="write every run's numbers here (JSON)")
    args = p.parse_args(argv)
    workloads = args.workloads.split(",")
    engines = [e for e in args.engines.split(",") if e]
    runs: dict[tuple[str, str], list[dict]] = {}
    for rep in range(args.reps):
        for w in workloads:
            for name, cmd in commands(w, engines, args.flower_python, args.threads).items():
                r = measure(cmd)
                runs.setdefault((name, w), []).append(r)
                print(f"rep {rep + 1} {w} {name}: FL {r['fl_s']:.2f} s (CPU {r['fl_cpu_s']:.2f} s),"
                      f" wall {r['wall_s']:.2f} s,"
                      f" peak {r['tree_peak_mb']:.0f} MB, acc {r['accuracy']:.4f},"
                      f" steps {r.get('steps')}", file=sys.stderr, flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({f"{k[0]}|{k[1]}": v for k, v in runs.items()},
                                             indent=1))
    report(runs, workloads)


def report(runs: dict[tuple[str, str], list[dict]], workloads: list[str]) -> None:
    def med(name: str, w: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[(name, w)])

    names = list(dict.fromkeys(k[0] for k in runs))
    head = "| implementation |" + "".join(f" {w} wall | {w} FL |" for w in workloads)
    print(head + " peak MB | accuracy |")
    print("|---" * (2 + 2 * len(workloads) + 1) + "|")
    for n in names:
        cells = "".join(f" {med(n, w, 'wall_s'):.2f} | {med(n, w, 'fl_s'):.2f} |"
                        for w in workloads)
        peak = max(med(n, w, "tree_peak_mb") for w in workloads)
        acc = " / ".join(f"{med(n, w, 'accuracy'):.4f}" for w in workloads)
        print(f"| {n} |{cells} {peak:.0f} | {acc} |")
    print()
    for n in names:
        if not n.startswith("fedcluster"):
            continue
        for w in workloads:
            def ratio(a: str, b: str, key: str, w: str = w) -> str:
                return f"{med(a, w, key) / med(b, w, key):.2f}"

            parts = [f"FL/bare {ratio(n, 'bare loop', 'fl_s')}",
                     f"peak/bare {ratio(n, 'bare loop', 'tree_peak_mb')}"]
            if ("flower", w) in runs:
                parts.append(f"flower wall/ours {ratio('flower', n, 'wall_s')}")
            print(f"{n} {w}: " + ", ".join(parts))


if __name__ == "__main__":
    main()
