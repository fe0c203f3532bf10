"""The distributed engine: a round's clients spread over torch.distributed ranks.

In the manner of pfl-research's simulated aggregation (``pfl/aggregate/simulate.py``):
every rank runs the same round loop with the same server state, and the ranks
exchange only flat tensors. Per round:

1. every rank derives the same client sample from (seed, round), and the same split
   of it over ranks, balanced by training-set size (any number of clients per rank);
2. each rank trains its share with a local engine (sequential or vectorised); a client
   whose training raised is a failed update (``Update.error``, zero delta) whose error
   text travels with the statistics, so every rank leaves it out of the round alike;
3. what clustering needs (the update vectors) is all-gathered as one padded
   ``[clients per rank, D]`` tensor, the per-client numbers as a float64 one;
4. the server clusters them (labels broadcast from rank 0, so ranks cannot drift),
   each rank sums the clients it trained (``Update.owned``) per cluster, and one
   all-reduce of the flat ``[k * D + k]`` sums gives every rank the new cluster models
   (:class:`RankAggregator`, handed to the server step);
5. evaluation (and IFCA's per-client losses): each rank evaluates its share of the
   clients, and the per-client ``[n, correct, top-5, loss]`` rows are all-gathered.

With ``data.partition = "local"`` a client lives on one rank (its site) and is
trained and evaluated only there. So does a client of an algorithm with per-client
state (SCAFFOLD, FedDyn, the personalised ones): its home rank, fixed for the run by
:func:`split_by_load` of all training-set sizes, holds its state (fl/client_state.py),
evaluates its own model (:meth:`DistributedEngine.evaluate_own`, one all-gather for all
clients) and hands its rows to rank 0 for a checkpoint (:meth:`~DistributedEngine.gather_rows`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist

from ..engines import Engine
from ..fl.aggregate import group_sums
from ..fl.client import LocalRule, Update
from ..fl.client_state import new_store
from ..fl.evaluate import EvalStats
from ..fl.validate import screen
from .collectives import LOST_AFTER_BEATS, Collectives, DistributedError
from .group import HEARTBEAT_S

__all__ = ["DistributedEngine", "RankAggregator", "split_by_load"]


ERROR_BYTES = 200  # of a failed client's error text, sent to every rank


def split_by_load(loads: np.ndarray, parts: int) -> np.ndarray:
    """The part (rank) of each item: largest first onto the least-loaded part (LPT).

    Deterministic: ties go to the lower item index and the lower part, so every rank
    computes the same split without communicating.
    """
    owner = np.empty(len(loads), dtype=np.int64)
    heap = [(0, p) for p in range(parts)]
    for i in np.argsort(-np.asarray(loads), kind="stable"):
        load, p = heapq.heappop(heap)
        owner[i] = p
        heapq.heappush(heap, (load + int(loads[i]), p))
    return owner


class DistributedEngine:
    """Trains and evaluates this rank's share with ``local``.

    ``home[c]`` is the rank holding client ``c``'s data when data stays on its site
    (``data.partition = "local"``); otherwise any rank can train any client and
    ``train_sizes`` / ``eval_sizes`` balance the work.
    """

    def __init__(self, local: Engine, comm: Collectives, train_sizes: np.ndarray,
                 eval_sizes: np.ndarray, home: np.ndarray | None = None) -> None:
        self.local, self.comm = local, comm
        self.rank, self.world = comm.rank, comm.world
        self.train_sizes, self.eval_sizes, self.home = train_sizes, eval_sizes, home

    def _owners(self, clients: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        if self.home is not None:
            return self.home[clients]
        return split_by_load(sizes[clients], self.world)

    def train(self, round_: int, jobs: Sequence[tuple[int, torch.Tensor]],
              corrections: torch.Tensor | None = None,
              rule: LocalRule | None = None) -> Iterator[Update]:
        """Train this rank's share of ``jobs``; each of the ``corrections`` (one row per job,
        the same on every rank) goes with its job, ``rule`` with every job."""
        if not jobs:
            return
        clients = np.array([c for c, _ in jobs], dtype=np.int64)
        owner = self._owners(clients, self.train_sizes)
        picked = np.flatnonzero(owner == self.rank)
        mine = [jobs[j] for j in picked]
        if corrections is None:
            trained = self.local.train(round_, mine, None, rule)
        else:
            rows_ = torch.as_tensor(picked, dtype=torch.long, device=corrections.device)
            trained = self.local.train(round_, mine, corrections[rows_], rule)
        done = {u.client: u for u in trained}
        cap = int(np.bincount(owner, minlength=self.world).max())
        start = jobs[0][1]
        rows = torch.zeros(cap, start.numel(), dtype=start.dtype, device=start.device)
        meta = torch.zeros(cap, 3, dtype=torch.float64)
        errors = torch.zeros(cap, ERROR_BYTES, dtype=torch.uint8)  # a failed client's error
        for s, (c, _) in enumerate(mine):
            u = screen(done.pop(c), start)  # each update is dropped once copied
            rows[s] = u.delta
            meta[s] = torch.tensor([u.num_examples, u.train_loss, u.steps], dtype=torch.float64)
            if u.error is not None:
                text = (u.error.encode("utf-8", "replace") or b"?")[:ERROR_BYTES]
                errors[s, :len(text)] = torch.frombuffer(bytearray(text), dtype=torch.uint8)
        rows = self.comm.all_gather(rows, f"round {round_}: gathering client updates")
        meta = self.comm.all_gather(meta, f"round {round_}: gathering client statistics")
        errors = self.comm.all_gather(errors, f"round {round_}: gathering client errors").cpu()
        slot = np.zeros(self.world, dtype=np.int64)
        for c, q in zip(clients.tolist(), owner.tolist(), strict=True):
            n, loss, steps = meta[q, slot[q]].tolist()
            text = bytes(errors[q, slot[q]].numpy()).rstrip(b"\0")
            error = text.decode("utf-8", "replace") if text else None
            yield Update(c, rows[q, slot[q]], int(n), loss, int(steps), owned=q == self.rank,
                         error=error)
            slot[q] += 1

    def _per_client(self, clients: Sequence[int], sizes: np.ndarray, width: int, what: str,
                    rows: Callable[[list[int]], torch.Tensor]) -> torch.Tensor:
        """``[len(clients), width]`` float64 on every rank: each rank computes ``rows`` for
        its share of ``clients``, and the padded shares are all-gathered."""
        ids = np.asarray(clients, dtype=np.int64)
        owner = self._owners(ids, sizes)
        mine = ids[owner == self.rank].tolist()
        cap = int(np.bincount(owner, minlength=self.world).max())
        block = torch.zeros(cap, width, dtype=torch.float64)
        if mine:
            block[:len(mine)] = rows(mine).to(torch.float64).cpu()
        every = self.comm.all_gather(block, what)
        slot = np.zeros(self.world, dtype=np.int64)
        out = torch.empty(len(ids), width, dtype=torch.float64)
        for j, q in enumerate(owner.tolist()):
            out[j] = every[q, slot[q]]
            slot[q] += 1
        return out

    def _stats(self, clients: Sequence[int], what: str,
               evaluate: Callable[[list[int]], list[EvalStats]]) -> list[EvalStats]:
        """``evaluate`` on each rank's share of ``clients``; the ``[n, correct, top-5,
        loss]`` rows all-gathered (one collective)."""
        if len(clients) == 0:
            return []

        def rows(mine: list[int]) -> torch.Tensor:
            return torch.tensor([[s.n, s.correct, s.correct5, s.loss_sum]
                                 for s in evaluate(mine)], dtype=torch.float64)

        got = self._per_client(clients, self.eval_sizes, 4, what, rows)
        return [EvalStats(int(round(n)), c, c5, loss) for n, c, c5, loss in got.tolist()]

    def evaluate_clients(self, vector: torch.Tensor, clients: Sequence[int]) -> list[EvalStats]:
        return self._stats(clients, "evaluation",
                           lambda mine: self.local.evaluate_clients(vector, mine))

    def evaluate_own(self, clients: Sequence[int], model_of: Callable[[int], torch.Tensor]
                     ) -> list[EvalStats]:
        """Each client's own model on its own eval set, evaluated on the client's home rank
        (the one holding its state) when clients have homes: one all-gather a round."""
        return self._stats(clients, "personal evaluation",
                           lambda mine: self.local.evaluate_own(mine, model_of))

    def held(self) -> np.ndarray | None:
        """The clients whose state this rank holds (sorted), when clients have homes."""
        return None if self.home is None else np.flatnonzero(self.home == self.rank)

    def gather_rows(self, part: torch.Tensor, held: np.ndarray, what: str,
                    chunk_bytes: int = 1 << 26) -> torch.Tensor | None:
        """On rank 0 the whole ``[N, D]`` CPU store of which each rank holds ``part``, the
        rows of its clients ``held`` (None on the other ranks); all-gathered in chunks of
        about ``chunk_bytes`` a rank, so only rank 0 ever holds more than a chunk of every
        rank's rows (and a store past ``MMAP_BYTES`` is memory-mapped)."""
        homes = self.home
        assert homes is not None, "clients have no home ranks"
        counts = np.bincount(homes, minlength=self.world)
        whole = new_store(len(homes), part.shape[1], part.dtype) if self.rank == 0 \
            else None  # memory-mapped past the threshold, as the ranks' own stores
        step = max(1, chunk_bytes // max(1, part.shape[1] * part.element_size()))
        where = [np.flatnonzero(homes == q) for q in range(self.world)]
        for a in range(0, int(counts.max()), step):
            block = torch.zeros(step, part.shape[1], dtype=part.dtype, device=part.device)
            mine = part[a:a + step]
            block[:len(mine)] = mine
            every = self.comm.all_gather(block, f"gathering {what}").cpu()
            for q in range(self.world if whole is not None else 0):
                ids = where[q][a:a + step]
                whole[torch.from_numpy(ids)] = every[q, :len(ids)]
        return whole

    def evaluate(self, vector: torch.Tensor, clients: Sequence[int]) -> EvalStats:
        return sum(self.evaluate_clients(vector, clients), EvalStats())

    def client_losses(self, vectors: torch.Tensor, clients: Sequence[int]) -> torch.Tensor:
        if len(clients) == 0:
            return torch.empty(0, len(vectors), dtype=torch.float64)
        return self._per_client(clients, self.train_sizes, len(vectors), "client losses",
                                lambda mine: self.local.client_losses(vectors, mine))

    def check_same(self, values: Sequence[int], what: str) -> None:
        """Fail on every rank, naming the ranks, unless all ranks hold the same ``values``."""
        mine = torch.tensor(list(values), dtype=torch.int64)
        every = self.comm.all_gather(mine, f"comparing {what}")
        odd = [r for r in range(self.world) if not torch.equal(every[r], every[0])]
        if odd:
            raise DistributedError(f"rank(s) {', '.join(map(str, odd))} differ from rank 0 in "
                                   f"{what}; every rank must run the same configuration")


class RankAggregator:
    """Aggregation over the ranks of a process group (see the module docstring, step 4)."""

    def __init__(self, comm: Collectives) -> None:
        self.comm = comm

    def sums(self, vectors: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor, k: int,
             rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-cluster sums and weights of this rank's ``rows``, added up over all ranks:
        one all-reduce of one flat tensor."""
        sums, totals = group_sums(vectors, weights, labels, k, rows=rows)
        flat = self.comm.all_reduce(torch.cat([sums.reshape(-1), totals.to(sums.dtype)]),
                                    "aggregation")
        return flat[:-k].view_as(sums), flat[-k:].to(totals.dtype)

    def agree(self, labels: np.ndarray) -> np.ndarray:
        """Rank 0's cluster labels on every rank (identical inputs should give identical
        labels anyway; this makes divergence impossible)."""
        t = self.comm.broadcast(torch.from_numpy(np.ascontiguousarray(labels)), "cluster labels")
        return t.numpy()

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on any (e.g. an early stop)."""
        t = self.comm.all_reduce(torch.tensor([int(flag)]), "stop flag", op=dist.ReduceOp.MAX)
        return bool(t.item())

    def failed(self, error: BaseException) -> None:
        """Tell the other ranks this one fails (a failed collective has told them)."""
        if not isinstance(error, DistributedError):
            self.comm.report_failure(f"{type(error).__name__}: {error}")

    def stopped(self) -> None:
        """Raise :class:`DistributedError` when ranks died rather than stopped with this
        one: torchrun stops the survivors of a worker that died, often before they reach
        the collective that would have failed."""
        lost = self.comm.lost()
        if lost:
            raise DistributedError(
                f"rank {self.comm.rank}: stopped by a signal, and rank(s) "
                f"{', '.join(map(str, lost))} stopped responding before it (no heartbeat "
                f"for {LOST_AFTER_BEATS * HEARTBEAT_S:g} s: died or hung)")
