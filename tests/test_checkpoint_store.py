"""A checkpoint's client stores: streamed to files of their own and back, never whole in
memory, checked against the checkpoint that names them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import save as save_bytes

from fedcluster.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fedcluster.fl import client_state
from fedcluster.fl.state import RunState


def _state(round_: int, store: torch.Tensor) -> RunState:
    return RunState(round_, torch.randn(2, 3), np.zeros(len(store), dtype=np.int64),
                    clients={"s": store})


def _store_file(run_dir):
    return run_dir / json.loads((run_dir / "checkpoint.json").read_text())["clients"]["s"]["file"]


def test_a_store_is_read_back_exactly_in_chunks_into_a_memory_mapped_store(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(client_state, "CHUNK_BYTES", 3 * 5 * 2)  # 3 rows of 5 bf16 a chunk
    monkeypatch.setattr(client_state, "MMAP_BYTES", 16)
    store = torch.randn(7, 5).to(torch.bfloat16)  # a dtype NumPy lacks: its bits are kept
    save_checkpoint(tmp_path, _state(2, store))
    back = load_checkpoint(tmp_path).clients["s"]
    assert back.dtype == torch.bfloat16 and torch.equal(back, store)
    assert back.untyped_storage().filename is not None  # mapped from a (deleted) file
    raw = np.load(_store_file(tmp_path))  # an ordinary .npy file: the bits, row by row
    assert raw.shape == (7, 5) and np.array_equal(raw, store.view(torch.int16).numpy()
                                                  .view(np.uint16))


@pytest.mark.parametrize("damage", ["flipped", "truncated", "missing", "other-round",
                                    "other-shape"])
def test_a_damaged_or_mismatched_store_file_is_refused_naming_it(damage, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    save_checkpoint(other, _state(1, torch.randn(6, 4) if damage == "other-round"
                                  else torch.randn(5, 4)))
    save_checkpoint(tmp_path, _state(2, torch.randn(6, 4)))
    path = _store_file(tmp_path)
    data = path.read_bytes()
    if damage == "flipped":
        path.write_bytes(data[:-5] + bytes([data[-5] ^ 1]) + data[-4:])
    elif damage == "truncated":
        path.write_bytes(data[:-4])
    elif damage == "missing":
        path.unlink()
    else:  # another checkpoint's store put in its place
        shutil.copy(_store_file(other), path)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path)
    message = str(e.value)
    assert str(path) in message and "\n" not in message
    expected = {"flipped": "checksum", "truncated": "cut short", "missing": "No such file",
                "other-round": "checksum", "other-shape": "shape (5, 4)"}[damage]
    assert expected in message


def test_a_format_1_checkpoint_with_its_stores_inside_still_loads(tmp_path):
    store = torch.randn(4, 3)
    plain = {"format": "fedcluster-checkpoint/1", "round": 5, "k": 2, "method": {},
             "stop": {}}
    tensors = {"models": torch.randn(2, 3), "assignment": torch.zeros(4, dtype=torch.int64),
               "clients/s": store}
    (tmp_path / "checkpoint.safetensors").write_bytes(
        save_bytes(tensors, metadata={"state": json.dumps(plain)}))
    back = load_checkpoint(tmp_path)
    assert back.round == 5 and torch.equal(back.clients["s"], store)


_BOUNDED = """
import dataclasses, resource, sys
import numpy as np, torch
from fedcluster.checkpoint import load_checkpoint, save_checkpoint
from fedcluster.dist.engine import DistributedEngine
from fedcluster.fl import client_state
from fedcluster.fl.state import RunState

torch.set_num_threads(1)
client_state.MMAP_BYTES = 1 << 20  # force the memory-mapped path
client_state.CHUNK_BYTES = 4 << 20
n, dim = 96, 1 << 20  # 384 MiB of float32
run_dir = sys.argv[1]
state = RunState(1, torch.zeros(1, 4), np.zeros(n, dtype=np.int64))
state, store = client_state.client_store(state, "s", n, dim, state.models[0], run_dir)
for part in client_state.chunks(n, dim * 4):
    rows = torch.arange(part.start, part.stop, dtype=torch.float32)[:, None]
    store[part] = rows + torch.arange(dim, dtype=torch.float32) / dim
home = np.arange(n) % 2  # 2 ranks: rank 0 holds the even clients, rank 1 the odd ones
mine = client_state.keep_held(state, np.flatnonzero(home == 0)).clients["s"]  # mapped


class TwoRanks:
    \"\"\"Rank 0's view of the group: rank 1 sends the odd clients' rows, a chunk a call.\"\"\"
    rank, world, calls = 0, 2, 0

    def all_gather(self, block, what):
        ids = np.flatnonzero(home == 1)[self.calls * len(block):][:len(block)]
        theirs = torch.zeros_like(block)
        theirs[:len(ids)] = store[torch.from_numpy(ids)]
        self.calls += 1
        return torch.stack([block, theirs])


def data_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmData:"):
            return int(line.split()[1]) * 1024


allowed = 64 << 20  # a sixth of the store: private memory may grow this much at most
resource.setrlimit(resource.RLIMIT_DATA, (data_bytes() + allowed,) * 2)
try:
    torch.empty(n * dim // 4)  # a quarter of the store, in process memory: refused
    sys.exit("the limit does not hold")
except RuntimeError:
    pass
save_checkpoint(run_dir, state)  # one process: the store as it is
assert torch.equal(load_checkpoint(run_dir).clients["s"][-1], store[-1])
engine = DistributedEngine(None, TwoRanks(), np.ones(n), np.ones(n), home)
whole = engine.gather_rows(mine, engine.held(), "s", chunk_bytes=4 << 20)
save_checkpoint(run_dir, dataclasses.replace(state, clients={"s": whole}))  # 2 ranks
back = load_checkpoint(run_dir)
held = np.arange(0, n, 3)
kept = client_state.keep_held(back, held).clients["s"]
for part in client_state.chunks(n, dim * 4):
    assert torch.equal(back.clients["s"][part], store[part])
for part in client_state.chunks(len(held), dim * 4):
    assert torch.equal(kept[part], store[torch.from_numpy(held[part])])
print("ok")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA, /proc: Linux")
def test_checkpointing_and_resuming_a_mapped_store_never_holds_it_in_memory(tmp_path):
    """Process memory (RLIMIT_DATA: what is not a shared file mapping) may not grow by an
    sixth of a 384 MiB memory-mapped store while it is checkpointed from one process and
    gathered from two (rank 0's side), read back and its held rows taken: any whole copy
    of it, or of a quarter, is refused."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}  # glibc: buffers of a
    # chunk are mapped and given back when freed, not kept in a growing heap
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_BOUNDED), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
