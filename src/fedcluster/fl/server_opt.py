"""Server optimisers on each cluster's pseudo-gradient.

Reddi et al., "Adaptive Federated Optimization", ICLR 2021 (Algorithm 2: FedAdagrad,
FedAdam, FedYogi), and FedAvgM (Hsu et al., "Measuring the Effects of Non-Identical
Data Distribution for Federated Visual Classification", 2019). A cluster's
pseudo-gradient is ``g = target - model``, its target being the weighted mean of its
members' local models; with ``m`` and ``v`` the optimiser's state:

- fedavg: ``x <- x + lr * g`` (``lr = 1``: the mean itself; no state);
- fedavgm: ``m <- momentum * m + g``, ``x <- x + lr * m``;
- fedadagrad: ``v <- v + g^2``;
- fedadam: ``v <- beta2 * v + (1 - beta2) * g^2``;
- fedyogi: ``v <- v - (1 - beta2) * g^2 * sign(v - g^2)``;
- and for the three adaptive ones ``m <- beta1 * m + (1 - beta1) * g``,
  ``x <- x + lr * m / (sqrt(v) + tau)``, without bias correction, as in the paper.

The state starts at ``m = 0`` and ``v = tau^2`` (the paper's ``v_{-1} >= tau^2``). Each
cluster model has its own state: the rows of ``[K, P]`` tensors in
``RunState.server_opt``. A cluster that receives no update keeps its model and its
state; a cluster opened mid-run (CFL, k = "auto") starts as a copy of its parent's model
and so takes a copy of its parent's state; a warm-up round that gives every model cluster
0's new value gives every state cluster 0's too.

Only parameters have gradients: a model's float buffers (BatchNorm statistics, after
its first ``params`` entries) take their members' mean directly under every rule but
fedavg, which moves the whole vector by ``lr`` as it always has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["OPTIMIZERS", "ServerOpt", "apply", "init_state", "opened", "step"]

Name = Literal["fedavg", "fedavgm", "fedadagrad", "fedadam", "fedyogi"]
# The state each rule keeps per cluster.
OPTIMIZERS: dict[str, tuple[str, ...]] = {
    "fedavg": (), "fedavgm": ("m",), "fedadagrad": ("m", "v"), "fedadam": ("m", "v"),
    "fedyogi": ("m", "v")}


@dataclass(frozen=True)
class ServerOpt:
    """A server optimiser's rule and hyper-parameters (the learning rate is the server's)."""

    name: Name = "fedavg"
    momentum: float = 0.9  # fedavgm
    beta1: float = 0.9  # fedadagrad, fedadam, fedyogi
    beta2: float = 0.99  # fedadam, fedyogi
    tau: float = 1e-3  # adaptivity: the floor of sqrt(v), and v's start sqrt
    params: int | None = None  # the vector's leading entries that are parameters (None: all)

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"server optimiser {self.name!r}: expected one of {list(OPTIMIZERS)}")


def init_state(opt: ServerOpt, like: torch.Tensor) -> dict[str, torch.Tensor]:
    """The state before a first step, shaped like ``like`` (``[P]`` or ``[K, P]``)."""
    out = {}
    for key in OPTIMIZERS[opt.name]:
        out[key] = torch.zeros_like(like) if key == "m" else torch.full_like(like, opt.tau ** 2)
    return out


def step(model: torch.Tensor, pseudo_grad: torch.Tensor, state: dict[str, torch.Tensor],
         opt: ServerOpt, lr: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One server step: the new model and state (new tensors; nothing is changed in place).

    Elementwise, so ``model`` may be one cluster's ``[P]`` or a stack ``[K, P]`` with a
    state of the same shape.
    """
    g = pseudo_grad
    if opt.name == "fedavg":
        return model + lr * g, {}
    if opt.name == "fedavgm":
        m = opt.momentum * state["m"] + g
        return model + lr * m, {"m": m}
    m = opt.beta1 * state["m"] + (1 - opt.beta1) * g
    g2 = g * g
    v = state["v"]
    if opt.name == "fedadagrad":
        v = v + g2
    elif opt.name == "fedadam":
        v = opt.beta2 * v + (1 - opt.beta2) * g2
    else:  # fedyogi
        v = v - (1 - opt.beta2) * g2 * torch.sign(v - g2)
    return model + lr * m / (v.sqrt() + opt.tau), {"m": m, "v": v}


def opened(state: dict[str, torch.Tensor], parents: Sequence[int]) -> dict[str, torch.Tensor]:
    """The state with one row appended per newly opened cluster, a copy of its parent's."""
    if not parents or not state:
        return state
    rows = torch.tensor(list(parents), dtype=torch.long)
    return {key: torch.cat([t, t[rows.to(t.device)]]) for key, t in state.items()}


def apply(models: torch.Tensor, targets: torch.Tensor, active: Sequence[int],
          state: dict[str, torch.Tensor], opt: ServerOpt, lr: float,
          broadcast: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Step the ``active`` clusters (those that received updates) of ``models [K, D]``
    towards ``targets [K, D]``; the others keep their model and state. With
    ``broadcast`` every model and state then takes cluster 0's. Returns new tensors.

    Entries of ``state`` that are not this rule's (another algorithm's per-cluster
    tensors, such as SCAFFOLD's control variates) are kept, and broadcast alike.
    """
    new = models.clone()
    p = models.shape[1] if opt.params is None else opt.params
    others = {k: t for k, t in state.items() if k not in OPTIMIZERS[opt.name]}
    state = {k: t for k, t in state.items() if k in OPTIMIZERS[opt.name]}
    if opt.name != "fedavg" and not state:
        state = init_state(opt, models[:, :p])
    if len(active):
        rows = torch.as_tensor(list(active), dtype=torch.long, device=models.device)
        if opt.name == "fedavg":
            new[rows] = step(models[rows], targets[rows] - models[rows], {}, opt, lr)[0]
        else:
            x = models[rows, :p]
            moved, changed = step(x, targets[rows, :p] - x, {k: t[rows] for k, t in state.items()},
                                  opt, lr)
            new[rows, :p] = moved
            new[rows, p:] = targets[rows, p:]  # buffers: the members' mean
            state = {k: t.clone() for k, t in state.items()}
            for k, t in changed.items():
                state[k][rows] = t
    if broadcast:
        new[1:] = new[0]
        state = {k: t[:1].expand_as(t).clone() for k, t in state.items()}
        others = {k: t[:1].expand_as(t).clone() for k, t in others.items()}
    return new, {**others, **state}
