"""Models as flat vectors.

:class:`FlatModel` re-homes a module's parameters and floating-point buffers as views
into one contiguous 1-D tensor. Loading a model is then one ``copy_`` and reading it
one ``clone``; the vector handed in is never aliased, so a client's training can
never write into the round's starting model.

With ``channels_last`` every 4-D parameter (a convolution's weight) is laid out in
its chunk as ``[out, h, w, in]`` and viewed as ``[out, in, h, w]``: convolutions on
CPU then run in oneDNN's channels-last kernels, which on a 2-core machine train
mnist-cnn about 1.3x and evaluate it about 1.6x faster. Only the order of numbers
inside the flat vector changes; :meth:`state_dict` always returns the usual layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["FlatModel", "Slot"]


@dataclass(frozen=True)
class Slot:
    """Where one named tensor lives inside the flat vector."""

    name: str
    offset: int
    shape: tuple[int, ...]
    is_buffer: bool
    channels_last: bool = False

    def view(self, flat: torch.Tensor) -> torch.Tensor:
        """This tensor as a view into ``flat`` (the model's vector, or its gradient)."""
        chunk = flat[self.offset:self.offset + self.numel]
        if self.channels_last:
            out, in_, h, w = self.shape
            return chunk.view(out, h, w, in_).permute(0, 3, 1, 2)
        return chunk.view(self.shape)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


class FlatModel:
    """A module whose parameters and float buffers are views into ``self.flat``."""

    def __init__(self, module: nn.Module, channels_last: bool = False) -> None:
        self.module, self.channels_last = module, channels_last
        self._grad: torch.Tensor | None = None
        params = list(module.named_parameters())
        buffers = [(n, b) for n, b in module.named_buffers() if b.is_floating_point()]
        dtypes = {t.dtype for _, t in params + buffers}
        devices = {t.device for _, t in params + buffers}
        if len(dtypes) != 1 or len(devices) != 1:
            raise ValueError(f"FlatModel needs one dtype and device, got {dtypes} on {devices}")
        total = sum(t.numel() for _, t in params + buffers)
        self.flat = torch.empty(total, dtype=dtypes.pop(), device=devices.pop())
        self.slots: list[Slot] = []
        offset = 0
        for is_buffer, entries in ((False, params), (True, buffers)):
            for name, t in entries:
                slot = Slot(name, offset, tuple(t.shape), is_buffer,
                            channels_last and not is_buffer and t.dim() == 4)
                view = slot.view(self.flat)
                view.copy_(t.detach())
                if is_buffer:
                    owner, _, attr = name.rpartition(".")
                    setattr(module.get_submodule(owner), attr, view)
                else:
                    t.data = view
                self.slots.append(slot)
                offset += t.numel()

    @property
    def numel(self) -> int:
        return self.flat.numel()

    @property
    def num_params(self) -> int:
        """Length of the trainable prefix of ``flat`` (buffers follow the parameters)."""
        return sum(s.numel for s in self.slots if not s.is_buffer)

    def attach_grad(self) -> torch.Tensor:
        """A flat gradient ``[num_params]``; every parameter's ``.grad`` becomes a view into it.

        Zero it before ``backward()``: autograd then accumulates into the views in place,
        so an optimiser can step all parameters at once on ``flat[:num_params]``. The
        model keeps one such gradient: engines sharing the model share it.
        """
        if self._grad is None:
            self._grad = torch.zeros(self.num_params, dtype=self.flat.dtype,
                                     device=self.flat.device)
        slots = {s.name: s for s in self.slots}
        for name, p in self.module.named_parameters():
            p.grad = slots[name].view(self._grad)
        return self._grad

    def vector(self) -> torch.Tensor:
        """A copy of the current weights as a flat vector (never a view)."""
        return self.flat.detach().clone()

    def load(self, vector: torch.Tensor) -> None:
        """Set the weights from ``vector`` (copied; ``vector`` is not retained)."""
        if vector.shape != self.flat.shape:
            raise ValueError(f"vector of shape {tuple(vector.shape)} for a model of {self.numel}")
        with torch.no_grad():
            self.flat.copy_(vector)

    def state_dict(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """The named tensors of ``vector``, each its own contiguous copy (e.g. for saving)."""
        return {s.name: s.view(vector).clone(memory_format=torch.contiguous_format)
                for s in self.slots}

    def from_state_dict(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        """The flat vector of a ``state_dict``-like mapping (the inverse of :meth:`state_dict`)."""
        out = torch.empty_like(self.flat)
        for s in self.slots:
            s.view(out).copy_(tensors[s.name].reshape(s.shape))
        return out
