"""Checkpoint and resume a memory-mapped client-state store of N clients x P parameters
with process memory bounded: times the save and the load, and checks the store comes
back bit for bit, in a process whose private memory may grow by ``--allowed-mib`` at
most (``RLIMIT_DATA``: a shared file mapping does not count; Linux only).

    MALLOC_MMAP_THRESHOLD_=1048576 PYTHONPATH=src \
        python benchmarks/checkpoint_store.py --clients 1000 --params 1000000 --dir /tmp/x

(the glibc setting makes freed chunk buffers go back to the system rather than stay in
a heap that counts against the limit).

Needs about 3x the store's size in disk under ``--dir`` (the run's store, the
checkpoint's file, the resumed store).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fedcluster.checkpoint import load_checkpoint, save_checkpoint
from fedcluster.fl import client_state
from fedcluster.fl.state import RunState


def _data_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmData:"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--params", type=int, default=1_000_000)
    ap.add_argument("--allowed-mib", type=int, default=64)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    n, dim = args.clients, args.params
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        run_dir = Path(d)
        state = RunState(1, torch.zeros(1, 4), np.zeros(n, dtype=np.int64))
        state, store = client_state.client_store(state, "s", n, dim, state.models[0], run_dir,
                                                 threshold=0)
        for part in client_state.chunks(n, dim * 4):  # row i: i + j / dim
            rows = torch.arange(part.start, part.stop, dtype=torch.float32)[:, None]
            store[part] = rows + torch.arange(dim, dtype=torch.float32) / dim
        allowed = args.allowed_mib << 20
        resource.setrlimit(resource.RLIMIT_DATA, (_data_bytes() + allowed,) * 2)
        t0 = time.perf_counter()
        save_checkpoint(run_dir, state)
        t1 = time.perf_counter()
        back = load_checkpoint(run_dir).clients["s"]
        t2 = time.perf_counter()
        same = all(torch.equal(back[p], store[p]) for p in client_state.chunks(n, dim * 4))
    print(json.dumps({"clients": n, "params": dim, "store_gib": n * dim * 4 / 2**30,
                      "allowed_mib": args.allowed_mib, "save_s": round(t1 - t0, 1),
                      "load_s": round(t2 - t1, 1), "bit_identical": same}))


if __name__ == "__main__":
    main()
