"""Every speed decision of a run, in one place: engine, threads, workers, layouts.

``run.engine = "auto"`` takes the vectorised engine where it is faster and the
model allows it, the sequential engine otherwise; ``run.threads = 0`` picks the
intra-op thread count and ``run.workers = 0`` the clients trained at once from the
model's cost per training step; ``run.memory_format`` and ``run.eval_layout`` choose
the CPU weight and evaluation layouts (the layouts themselves are in layout.py).
The choices come from measurements on a 2-core CPU machine (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import functools
import logging
import math
import os

import torch
from torch import nn

from ..config import Config
from ..data.augment import Augment
from ..data.federation import Federation
from ..fl.flat import FlatModel
from ..models.spec import ModelSpec
from .layout import blocked_stem
from .sequential import SequentialEngine
from .vmap import VmapEngine, vmap_unsupported

__all__ = ["BLOCKED_EVAL", "choose_engine", "choose_threads", "choose_workers", "make_engine",
           "plan_threads", "process_cores", "step_flops", "use_blocked_eval",
           "use_channels_last"]

log = logging.getLogger(__name__)

# Below this many FLOPs per training step (forward + backward of one batch) a second
# intra-op thread costs more in synchronisation than it gains.
THREADS_MIN_FLOPS = 100e6
# Below this many, one worker thread per core (each one intra-op thread) trains faster
# than one worker using all cores: 1.3-1.7x for mnist-cnn, simple-cnn and the digits CNN
# on 2 cores; resnet18 (1e11) is as fast either way, and one worker holds one replica.
WORKERS_MAX_FLOPS = 10e9
# Models that evaluate faster on CPU with their convolutional stem in oneDNN's blocked
# layout (run.eval_layout = "auto"), measured by benchmarks/eval_layout.py on 2 cores:
# mnist-cnn 1.4x, simple-cnn 1.6x; digits-cnn gains nothing (1.0-1.1x) and a VGG-like
# stack of 3x3 convolutions is slower (0.9x), so other models evaluate dense by default.
BLOCKED_EVAL = frozenset({"mnist-cnn", "simple-cnn"})


def step_flops(model: FlatModel, input_shape: tuple[int, ...], batch_size: int) -> float:
    """FLOPs of one training step: the multiply-adds of its convolutions and linear layers
    in one forward pass, times 3 (forward + backward). Counted with forward hooks, not
    ``FlopCounterMode``, whose first use imports torch._dynamo (a second of start-up)."""
    total = 0.0

    def count(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.modules.conv._ConvNd):
            per_output = m.in_channels // m.groups * math.prod(m.kernel_size)
        else:  # nn.Linear
            per_output = m.in_features
        total += 2.0 * out.numel() * per_output

    hooks = [m.register_forward_hook(count) for m in model.module.modules()
             if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    x = torch.zeros((batch_size, *input_shape), device=model.flat.device)
    try:
        with torch.no_grad():
            model.module.eval()
            model.module(x)
    finally:
        for h in hooks:
            h.remove()
    return 3.0 * total


def process_cores() -> int:
    """This process's share of the CPUs: its affinity set, split among the local ranks of
    a multi-process run (``LOCAL_WORLD_SIZE``)."""
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, len(os.sched_getaffinity(0)) // local)


def choose_threads(flops: float, cores: int | None = None) -> int:
    """Intra-op threads for one worker training a model costing ``flops`` per step;
    ``cores`` defaults to :func:`process_cores`."""
    cores = cores or process_cores()
    return 1 if flops < THREADS_MIN_FLOPS else cores


def choose_workers(flops: float, cores: int | None = None) -> int:
    """Clients to train at once (one thread each) for a model costing ``flops`` per step."""
    cores = cores or process_cores()
    return cores if flops < WORKERS_MAX_FLOPS else 1


def plan_threads(cfg: Config, model: FlatModel, spec: ModelSpec, device: torch.device,
                 parallel_clients: bool = True) -> tuple[int, int]:
    """``(torch threads, workers)``: ``run.threads`` and ``run.workers`` where set, else
    chosen from the model's cost per training step. Workers (clients trained at once, in
    threads) apply to the sequential engine on CPU; they share this process's cores."""
    run, cores = cfg.run, process_cores()
    flops = functools.cache(lambda: step_flops(model, spec.input_shape, cfg.client.batch_size))
    if not (parallel_clients and device.type == "cpu" and run.engine != "vmap"):
        workers = 1
    elif run.workers or run.threads:
        workers = run.workers or max(1, cores // run.threads)
    else:
        workers = choose_workers(flops(), cores)
    if run.threads:
        threads = run.threads
    elif device.type != "cpu":
        threads = torch.get_num_threads()
    elif workers > 1:
        threads = max(1, cores // workers)
    else:
        threads = choose_threads(flops(), cores)
    return threads, workers


def use_channels_last(memory_format: str, module: nn.Module, device: torch.device) -> bool:
    """Whether convolution weights are laid out channels-last (``run.memory_format``;
    "auto": for models with a 2-D convolution on CPU, where oneDNN's channels-last
    kernels are faster; on GPU in float32 they are not reliably so)."""
    if memory_format != "auto":
        return memory_format == "channels_last"
    return device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in module.modules())


def use_blocked_eval(layout: str, model_name: str, module: nn.Module,
                     device: torch.device) -> bool:
    """Whether evaluation runs the convolutional stem in oneDNN's blocked layout
    (``run.eval_layout``; "auto": for the models measured faster that way on CPU,
    ``BLOCKED_EVAL``). "blocked" on a model or device that cannot is an error."""
    if layout == "dense":
        return False
    able = device.type == "cpu" and torch.backends.mkldnn.is_available() and all(
        p.dtype == torch.float32 for p in module.parameters()) and blocked_stem(module) > 0
    if layout == "blocked" and not able:
        raise ValueError(
            'run.eval_layout = "blocked" needs a CPU run and a model of nn.Sequential '
            "containers only that starts with a Conv2d (float32); got "
            f"{type(module).__name__} on {device}; use \"auto\" or \"dense\"")
    return able and (layout == "blocked" or model_name in BLOCKED_EVAL)


def choose_engine(cfg: Config, model: FlatModel, device: torch.device,
                  augment: bool = False) -> str:
    """The engine ``run.engine`` names, resolving "auto"; refuse vmap where it cannot run."""
    name = cfg.run.engine
    reason = vmap_unsupported(model.module, augment)
    if name == "vmap" and reason:
        raise ValueError(reason)
    if name == "auto":
        name = "vmap" if device.type == "cuda" and reason is None else "sequential"
    return name


def make_engine(cfg: Config, federation: Federation, model: FlatModel, device: torch.device,
                augment: Augment | None = None, workers: int = 1) -> SequentialEngine | VmapEngine:
    """The engine for this run (see :func:`choose_engine`)."""
    name = choose_engine(cfg, model, device, augment is not None)
    blocked = use_blocked_eval(cfg.run.eval_layout, cfg.model.name, model.module, device)
    log.debug("engine: %s, blocked evaluation: %s", name, blocked)
    if name == "vmap":
        return VmapEngine(federation, model, cfg.client, cfg.seed, cfg.run.eval_batch_size,
                          cfg.run.vmap_chunk, blocked, cfg.algorithm.prox_mu)
    return SequentialEngine(federation, model, cfg.client, cfg.seed, cfg.run.eval_batch_size,
                            augment, workers, blocked, cfg.algorithm.prox_mu)
