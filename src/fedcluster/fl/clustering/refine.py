"""Cluster the clients' signatures from the initial model once, then let every client
re-choose by loss.

Two published rules, each used where it is reliable. Updates from one shared model are
comparable across clients, so the k cluster models are created by clustering them
(KMeans, as in the one-shot FL+HC of Briggs, Fan & Andras, IJCNN 2020). For the first
``warmup_rounds`` the models are held still (no model step) and each sampled client's
update from the initial model is kept as its signature (signature.py: per weight
matrix, the direction shared by every client's rows projected out and each row scaled
to unit norm; averaged over the rounds it was sampled in; trained for ``signature_epochs``
local epochs, ``SIGNATURE_EPOCHS``); the next round's clients train from that model
too, and KMeans of every signature gathered creates the k models. With partial
participation the clustering so sees every client sampled in any of those rounds, not
only one round's (with half of the clients per round and 2 such rounds, 7/8 of them;
an ``auto`` warm-up holds on while some client has no signature, for at most a third
of the run), and every signature comes from the same model: updates from models that moved in
between are not comparable (measured: clients whose single-round clusterings were right
were clustered at ARI 0.48 from FedAvg-warm-up signatures). From then on clients start
from different models and the distance between their weights says mostly which model
they started from (a re-clustering finds the current partition again and never repairs
an early mistake); instead, each round every sampled client evaluates every cluster
model on its own training data and trains the one with the lowest loss: the assignment
rule of IFCA (Ghosh, Chung, Yin & Ramchandran, NeurIPS 2020), here started from models
that the clustering has already pulled apart, which is what IFCA's random
initialisations lack. A client first sampled later joins the model that fits it best;
a client the clustering placed moves only to a model whose loss is clearly lower
(``MOVE_MARGIN``): it moves when it was misplaced (another group's rotation or label
permutation fits it far worse than its own group's model), not when another cluster's
label mix merely suits it a little better.

With ``k = "auto"`` the clustering takes the k with the best silhouette
(diagnostics.py). The state holds, until the clustering, the signatures and how many
rounds each averages (``signatures``, ``counts``), the federation's size and the last
round the warm-up may hold (``clients``, ``hold_until``; 0 when not known); then
``clustered``, the clients placed, and ``pending``: the cluster of each client the
clustering placed from an earlier round's signature, until it is next sampled, and
``signed``, the clients the clustering placed.
"""

from __future__ import annotations

import numpy as np
import torch

from ...config import ClusterConfig
from ...rng import SKETCH, key_seed
from .base import METHODS, Grouping, LossFn, MethodState, ModelInit, RoundView
from .diagnostics import best_k, scan_k
from .kmeans import kmeans_labels
from .signature import accumulate, round_signatures, stacked

__all__ = ["RESTARTS_PER_N_INIT", "SIGNATURE_DIM", "SIGNATURE_EPOCHS", "Refine"]

# Measured on label-permuted digits, half of the clients per round (benchmarks/RESULTS.md):
# the signatures of 33-36 clients sketched to 256 dimensions and clustered with 10 KMeans
# restarts gave ARI 0.30-0.73 on the worst of 5 KMeans seeds; 4096 dimensions and 100
# restarts, 1.00 on each of 5 federation seeds. The clustering happens once, so it can
# afford both.
SIGNATURE_DIM = 4096  # signatures of longer updates are sketched to this many dimensions
RESTARTS_PER_N_INIT = 10  # refine's KMeans runs cluster.n_init x this many restarts
# A placed client moves only to a model whose loss on its data is below (1 - this) x its
# own cluster's. With label skew inside the groups the models of the first rounds differ
# mostly in which labels they favour: the plain lowest-loss rule (margin 0) then moved
# rightly clustered clients to the model of a similar label mix (label-permuted digits,
# Dirichlet 0.5: ARI 1.00 after the clustering, 0.05 ten rounds later; the best other
# model's loss was 0.92-1.00 x the own one's); a client of another group meets a model
# of the wrong rotation or permutation, whose loss is a multiple of its own group's.
MOVE_MARGIN = 0.2
# An ``auto`` warm-up holds the models on, past its 2 rounds, while some client has no
# signature, for at most 1/HOLD_SHARE of the run's rounds. A client first sampled after
# the clustering can only be placed by loss, and with label skew inside the groups the
# young models' losses barely tell the groups apart (label-permuted digits, Dirichlet
# 0.5: 2.0-2.5 on every model): such clients ended in the wrong cluster on 7 of 10 runs
# (ARI 0.867-0.932); held on, the clustering sees them (benchmarks/RESULTS.md).
HOLD_SHARE = 3
# The rounds that gather signatures train each client this many local epochs (at least
# client.local_epochs; ``cluster.signature_epochs = "auto"``): a short local run from a
# random model says little about the client. Measured with 5 (benchmarks/RESULTS.md):
# 1-D waves, 4 label-permuted groups of 25 clients with 12 signals each: clustering ARI
# 0.26 -> 0.85, the last round's 0.41 -> 0.97 (seed 0); label skew inside the groups
# (rotated-dirichlet-half): min ARI over 10 seeds 0.932 -> 1.000, and 1-7 points of
# accuracy on every digits federation, as the cluster models start from a longer step.
SIGNATURE_EPOCHS = 5


class Refine:
    """KMeans of the clients' signatures from a shared model, then IFCA's loss rule."""

    restarts = 1

    def __init__(self, cfg: ClusterConfig) -> None:
        self.k, self.k_max = cfg.k, cfg.k_max
        self.scan, self.warmup = cfg.n_init, cfg.resolved_warmup
        self.extend = cfg.warmup_rounds == "auto"  # hold on until every client is seen
        self.n_init = cfg.n_init * RESTARTS_PER_N_INIT  # for the k taken
        self.signature_epochs = cfg.signature_epochs

    def init(self, start: ModelInit, restart: int = 0) -> tuple[torch.Tensor, MethodState]:
        """``k`` copies of the initial model (one with ``k = "auto"``); until the
        clustering, the clients train ``signature_epochs`` local epochs."""
        copies = 1 if self.k == "auto" else int(self.k)
        longest = max(self.warmup, start.rounds // HOLD_SHARE) if self.extend else self.warmup
        state = {"signatures": {}, "counts": {}, "sketch_seed": key_seed(start.seed, SKETCH),
                 "layers": [list(layer) for layer in start.layers],
                 "clients": start.clients, "hold_until": longest}
        epochs = (max(SIGNATURE_EPOCHS, start.local_epochs) if self.signature_epochs == "auto"
                  else int(self.signature_epochs))
        if epochs != start.local_epochs:
            state["epochs"] = epochs  # the clustering's new state has none (base.py)
        return start.initial[None].repeat(copies, 1), state

    def assign(self, round_: int, clients: np.ndarray, current: np.ndarray,
               losses: LossFn, state: MethodState) -> tuple[np.ndarray, MethodState]:
        """Before the clustering: the shared model. After it: a client the clustering
        placed from its warm-up signature alone starts from its cluster the first time
        it is sampled (that cluster's model may not have moved yet); every other sampled
        client from its lowest-loss model (the first on ties)."""
        if not state.get("clustered"):
            return current, state
        pending = dict(state.get("pending", {}))
        chosen = np.array([pending.pop(str(int(c)), -1) for c in clients], dtype=np.int64)
        free = chosen < 0
        if free.any():
            signed = set(state.get("signed", []))  # placed by the clustering: keep unless
            held = np.array([int(c) in signed for c in clients[free]])  # clearly worse
            chosen[free] = _by_loss(losses(clients[free]), np.where(held, current[free], -1))
        seen = set(state["clustered"]) | {int(c) for c in clients}
        return chosen, {**state, "clustered": sorted(seen), "pending": pending}

    def group(self, view: RoundView) -> Grouping:
        """Warm-up: signatures kept, no model moves; round ``warmup_rounds + 1``: KMeans
        of every signature so far (all from the initial model); later: each update joins
        the model it trained from."""
        state = view.state
        if state.get("clustered"):
            return Grouping(view.starts.copy())
        seed = state.get("sketch_seed", 0)  # a state not made by init (tests): seed 0
        layers = [tuple(layer) for layer in state.get("layers", [])]
        rows = round_signatures(view.deltas, SIGNATURE_DIM, seed, layers)
        sig, cnt = accumulate(state.get("signatures", {}), state.get("counts", {}),
                              view.clients, rows)
        unseen = len(sig) < state.get("clients", 0)
        if view.round <= self.warmup or (unseen and view.round <= state.get("hold_until", 0)):
            return Grouping(np.zeros(len(view.clients), dtype=np.int64), hold=True,
                            state={**state, "signatures": sig, "counts": cnt})
        clients, points = stacked(sig)
        sse, sil, _ = scan_k(points, lambda p, k: kmeans_labels(p, k, view.seed, self.scan),
                             self.k_max)  # the elbow curve and the silhouettes, n_init each
        k = best_k(sil) if self.k == "auto" else min(int(self.k), len(points))
        labels = kmeans_labels(points, k, view.seed, self.n_init)
        labels = np.unique(labels, return_inverse=True)[1].astype(np.int64)
        n_groups, have = int(labels.max()) + 1, len(view.models)
        of = dict(zip(clients.tolist(), labels.tolist(), strict=True))
        out = np.array([of.pop(int(c)) for c in view.clients], dtype=np.int64)
        return Grouping(out, {j: 0 for j in range(have, n_groups)}, clustered=True,
                        sse_per_k=sse, silhouette_per_k=sil,
                        extra={"k_chosen": n_groups, "signatures": len(clients)},
                        state={"clustered": clients.tolist(), "signed": clients.tolist(),
                               "sketch_seed": seed,
                               "pending": {str(c): g for c, g in of.items()}})


def _by_loss(losses: torch.Tensor, current: np.ndarray) -> np.ndarray:
    """Each client's lowest-loss model (the first on ties); a client with a cluster to
    keep (``current >= 0``) stays unless that model's loss is below ``1 - MOVE_MARGIN``
    times its own cluster's."""
    best = losses.argmin(dim=1).cpu().numpy()
    placed = np.flatnonzero(current >= 0)
    if len(placed):
        rows = losses[placed].double().cpu()
        own = rows[torch.arange(len(placed)), torch.as_tensor(current[placed])]
        stay = (rows.min(dim=1).values >= (1 - MOVE_MARGIN) * own).numpy()
        best[placed[stay]] = current[placed[stay]]
    return best


METHODS.register("refine")(Refine)
