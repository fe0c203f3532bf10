"""A server stepped over rounds as the loop does: the state carried from call to call."""

import dataclasses

import numpy as np
import torch

from fedcluster.fl.server import Server, StepInfo
from fedcluster.fl.state import new_state, start_cluster


class Stepper:
    """``Server`` + the run state it is stepped on; ``models``/``assignment``/``k`` read
    the current state."""

    def __init__(self, initial: torch.Tensor, num_clients: int, lr: float, method=None,
                 space=None, **kw) -> None:
        fields = {"lr": lr, **kw}
        if method is not None:
            fields["method"] = method
        if space is not None:
            fields["space"] = space
        self.server = Server(**fields)
        self.state = new_state(initial, num_clients)
        self.previous: np.ndarray | None = None

    models = property(lambda self: self.state.models)
    assignment = property(lambda self: self.state.assignment)
    k = property(lambda self: self.state.k)

    def start_cluster(self, client: int) -> int:
        return start_cluster(self.state, client)

    def set_assignment(self, assignment) -> None:
        self.state = dataclasses.replace(self.state, assignment=np.asarray(assignment))

    def assign(self, round_: int, clients: np.ndarray, losses) -> np.ndarray:
        self.previous = self.state.assignment
        self.state, starts = self.server.assign(self.state, round_, clients, losses)
        return starts

    def step(self, updates, seed: int = 0, round_: int = 1) -> StepInfo:
        server = dataclasses.replace(self.server, seed=seed)
        self.state, info = server.step(self.state, round_, updates, self.previous)
        self.previous = None
        return info
