"""The training sections of the config: data, model, client, server, cluster, stop, run."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from .base import _Section

__all__ = ["ClientConfig", "ClusterConfig", "DataConfig", "ModelConfig", "RunConfig",
           "ServerConfig", "StopConfig", "AlgorithmConfig", "AttackConfig"]


MACHINE_OVERSUBSCRIPTION = 4  # run.threads, run.workers: at most this many per core
MAX_TIMEOUT_S = 30 * 24 * 3600.0  # run.timeout_s (inf cannot be a torch.distributed timeout)


@dataclass(frozen=True)
class DataConfig(_Section):
    _section: ClassVar[str] = "data"
    dataset: str = "digits"
    root: str = "data"
    num_clients: int = 20
    partition: str = "dirichlet"  # a name in fedcluster.data.PARTITIONS, or "local"
    alpha: float = 0.5
    shards_per_client: int = 2
    min_size: int = 10
    download: bool = False
    augment: bool = True
    verify: bool = True
    folder: str = ""
    image_size: int = 224
    workers: int = 2
    shift: str = "none"  # a name in fedcluster.data.SHIFTS
    groups: int = 1
    replicate: bool = True
    normalize: bool = True  # false: inputs scaled to [0, 1] only
    # where clients' eval sets come from: the dataset's test split with each client's label
    # mix ("dataset"), or a seeded cut of each client's own samples ("per-client")
    eval_split: Literal["dataset", "per-client"] = "dataset"
    eval_fraction: float = 0.25  # "per-client": each client's eval share, ceil(fraction x n)
    # keyword arguments for the dataset's builder (a plugin's own parameters)
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check("image_size", self.image_size >= 8, "an integer >= 8 (pixels)")
        self._check("workers", self.workers >= 0, "an integer >= 0 (0 decodes in-process)")
        self._check("num_clients", self.num_clients >= 1, "an integer >= 1")
        self._check("groups", 1 <= self.groups <= self.num_clients,
                    f"an integer in [1, data.num_clients = {self.num_clients}]")
        self._check("shift", self.shift == "none" or self.groups >= 2,
                    '"none" when data.groups = 1 (a shift needs data.groups >= 2)')
        self._check("alpha", self.alpha > 0, "a number > 0")
        self._check("shards_per_client", self.shards_per_client >= 1, "an integer >= 1")
        self._check("min_size", self.min_size >= 0, "an integer >= 0")
        self._check("eval_fraction", 0 < self.eval_fraction < 1, "a number in (0, 1)")


@dataclass(frozen=True)
class ModelConfig(_Section):
    _section: ClassVar[str] = "model"
    name: str = "digits-cnn"
    hidden: list[int] = field(default_factory=lambda: [200])
    pretrained: bool | str = False

    def __post_init__(self) -> None:
        self._check("pretrained", self.pretrained != "",
                    'false, true (download the stock weights) or a path to a weights file')
        self._check("hidden", all(h >= 1 for h in self.hidden), "a list of integers >= 1")


@dataclass(frozen=True)
class ClientConfig(_Section):
    _section: ClassVar[str] = "client"
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    local_epochs: int = 1
    batch_size: int = 32
    drop_last: bool = True

    def __post_init__(self) -> None:
        self._check("lr", self.lr > 0, "a number > 0")
        self._check("momentum", 0 <= self.momentum < 1, "a number in [0, 1)")
        self._check("weight_decay", self.weight_decay >= 0, "a number >= 0")
        self._check("local_epochs", self.local_epochs >= 1, "an integer >= 1")
        self._check("batch_size", self.batch_size >= 1, "an integer >= 1")


@dataclass(frozen=True)
class AlgorithmConfig(_Section):
    """The clients' local objective and what they keep to themselves: FedAvg's, FedProx's
    proximal one, SCAFFOLD's corrected gradients (fl/scaffold.py), FedDyn's dynamic
    regulariser (fl/feddyn.py), or a personalised method (fl/personal.py)."""

    _section: ClassVar[str] = "algorithm"
    name: Literal["fedavg", "fedprox", "scaffold", "feddyn", "ditto", "local", "finetune",
                  "fedper", "fedrep", "fedbn"] = "fedavg"
    mu: float = 0.01  # fedprox: the weight of mu/2 ||w - w_start||^2; ditto: its lambda
    alpha: float = 0.01  # feddyn: the weight of its regulariser
    head: list[str] = field(default_factory=list)  # fedper, fedrep: local parameter-name
    #                                               prefixes ([]: the model's last layer)
    head_epochs: int = 1  # fedrep: epochs on the head (body frozen) before the body's
    finetune_epochs: int = 1  # finetune: local epochs from the cluster model before eval

    def __post_init__(self) -> None:
        self._check("mu", self.mu >= 0, "a number >= 0")
        self._check("alpha", self.alpha > 0, "a number > 0")
        self._check("head", all(isinstance(h, str) and h for h in self.head),
                    "a list of non-empty parameter-name prefixes")
        self._check("head_epochs", self.head_epochs >= 1, "an integer >= 1")
        self._check("finetune_epochs", self.finetune_epochs >= 1, "an integer >= 1")

    @property
    def prox_mu(self) -> float | None:
        """The proximal weight local training adds (None: FedAvg's objective). FedDyn's
        local objective has ``alpha/2 ||w - w_start||^2`` too (and a linear term)."""
        return {"fedprox": self.mu, "feddyn": self.alpha}.get(self.name)

    @property
    def personal(self) -> bool:
        """Whether each client ends with a model of its own (evaluated per client)."""
        return self.name in ("ditto", "local", "finetune", "fedper", "fedrep", "fedbn")


@dataclass(frozen=True)
class ServerConfig(_Section):
    _section: ClassVar[str] = "server"
    clients_per_round: int | float = 1.0
    lr: float = 1.0
    # which client updates are accepted (fl/validate.py)
    max_update_norm: float = 0.0  # an update's L2 norm above it is rejected (0: no bound)
    clip_updates: bool = False  # scale such an update down to max_update_norm instead
    min_clients: int = 1  # fewer accepted updates: the round makes no model step
    on_too_few: Literal["skip", "abort"] = "skip"
    # how each cluster's accepted updates are combined (fl/robust.py)
    aggregator: Literal["mean", "median", "trimmed-mean", "krum", "multi-krum",
                        "bulyan"] = "mean"
    trim: float = 0.1  # trimmed-mean: the fraction cut from each end of each coordinate
    byzantine: int = 0  # krum, multi-krum, bulyan, mixing: f, the Byzantine clients tolerated
    mixing: Literal["none", "nnm"] = "none"  # "nnm": each update averaged with its n - f nearest
    # the rule that moves each cluster model (fl/server_opt.py; Reddi et al. 2021)
    optimizer: Literal["fedavg", "fedavgm", "fedadagrad", "fedadam", "fedyogi"] = "fedavg"
    momentum: float = 0.9  # fedavgm
    beta1: float = 0.9  # fedadagrad, fedadam, fedyogi
    beta2: float = 0.99  # fedadam, fedyogi
    tau: float = 1e-3  # fedadagrad, fedadam, fedyogi: adaptivity

    def __post_init__(self) -> None:
        c = self.clients_per_round
        if isinstance(c, float):
            self._check("clients_per_round", 0 < c <= 1, "a count >= 1 or a fraction in (0, 1]")
        else:
            self._check("clients_per_round", c >= 1, "a count >= 1 or a fraction in (0, 1]")
        self._check("lr", self.lr > 0, "a number > 0")
        self._check("max_update_norm", self.max_update_norm >= 0,
                    "a number >= 0 (0: updates of any norm are accepted)")
        self._check("clip_updates", not self.clip_updates or self.max_update_norm > 0,
                    "false unless server.max_update_norm > 0 (the bound clipped to)")
        self._check("min_clients", self.min_clients >= 1, "an integer >= 1")
        self._check("trim", 0 <= self.trim < 0.5, "a fraction in [0, 0.5)")
        self._check("byzantine", self.byzantine >= 0, "an integer >= 0")
        self._check("mixing", self.mixing == "none" or self.aggregator != "mean",
                    '"none" with server.aggregator = "mean" (mixing is a step before a robust '
                    'rule)')
        self._check("byzantine", self.mixing == "none" or self.byzantine >= 1,
                    'an integer >= 1 with server.mixing = "nnm" (each update is averaged with '
                    'its n - f nearest; f = 0 would average all of them)')
        for name in ("momentum", "beta1", "beta2"):
            self._check(name, 0 <= getattr(self, name) < 1, "a number in [0, 1)")
        self._check("tau", self.tau > 0, "a number > 0")


@dataclass(frozen=True)
class ClusterConfig(_Section):
    _section: ClassVar[str] = "cluster"
    k: int | Literal["auto"] = 2
    k_max: int = 8
    method: Literal["kmeans", "ifca", "cfl", "hierarchical", "refine"] = "refine"
    schedule: Literal["auto", "every-round", "once"] = "auto"
    features: Literal["weights", "updates"] = "weights"
    reduce: Literal["pca2", "sketch", "none"] = "pca2"
    metric: Literal["euclidean", "cosine"] = "euclidean"
    sketch_dim: int = 256
    n_init: int = 10
    warmup_rounds: int | Literal["auto"] = "auto"
    signature_epochs: int | Literal["auto"] = "auto"
    distance_threshold: float = 0.0
    restarts: int = 1
    restart_rounds: int = 3
    cfl_eps1: float = 0.4
    cfl_eps2: float = 1.6

    def __post_init__(self) -> None:
        self._check("k", self.k == "auto" or self.k >= 1, 'an integer >= 1 or "auto"')
        self._check("k_max", self.k_max >= 2, "an integer >= 2")
        self._check("sketch_dim", self.sketch_dim >= 1, "an integer >= 1")
        self._check("n_init", self.n_init >= 1, "an integer >= 1")
        self._check("warmup_rounds", self.warmup_rounds == "auto" or self.warmup_rounds >= 0,
                    'an integer >= 0 or "auto" (2 for refine, longer while some client is '
                    'unseen; 0 for the other methods)')
        self._check("signature_epochs",
                    self.signature_epochs == "auto" or self.signature_epochs >= 1,
                    'an integer >= 1 or "auto" (refine: 5, at least client.local_epochs)')
        self._check("distance_threshold", self.distance_threshold >= 0,
                    "a number >= 0 (0: cut the dendrogram at k clusters)")
        self._check("restarts", self.restarts >= 1, "an integer >= 1")
        self._check("restart_rounds", self.restart_rounds >= 1, "an integer >= 1")
        self._check("cfl_eps1", self.cfl_eps1 > 0, "a number > 0")
        self._check("cfl_eps2", self.cfl_eps2 > 0, "a number > 0")
        self._check("method", self.method != "ifca" or self.k != "auto",
                    'a method that can choose k (kmeans, hierarchical, cfl) with k = "auto"; '
                    "ifca needs an integer k")

    @property
    def k_initial(self) -> int:
        """The largest k the config asks for up front (``k_max`` when k is chosen)."""
        return self.k_max if self.k == "auto" else int(self.k)

    @property
    def resolved_warmup(self) -> int:
        """``auto`` is 2 for refine (its clustering then sees the clients of 3 rounds,
        7/8 of them with half sampled per round), 0 for the other methods. Refine holds
        on past these while some client has no signature, for at most a third of the
        run's rounds (fl/clustering/refine.py, ``HOLD_SHARE``)."""
        if self.warmup_rounds != "auto":
            return int(self.warmup_rounds)
        return 2 if self.method == "refine" else 0

    def for_rounds(self, rounds: int) -> ClusterConfig:
        """This section for a run of ``rounds``: an ``auto`` warm-up leaves at least one
        round that moves the models (refine holds them during its warm-up), so a short
        run (``rounds=2``) still trains."""
        if self.warmup_rounds != "auto" or self.resolved_warmup < rounds:
            return self
        return dataclasses.replace(self, warmup_rounds=max(rounds - 1, 0))

    @property
    def resolved_schedule(self) -> str:
        """``auto`` is ``once`` for one-shot hierarchical clustering, else ``every-round``."""
        if self.schedule != "auto":
            return self.schedule
        return "once" if self.method == "hierarchical" else "every-round"


@dataclass(frozen=True)
class AttackConfig(_Section):
    """Simulated attackers (fl/attack.py): ``fraction`` of the clients, chosen by the seed."""

    _section: ClassVar[str] = "attack"
    kind: Literal["none", "sign-flip", "scale", "gaussian", "nan", "label-flip"] = "none"
    fraction: float = 0.2
    scale: float = 10.0  # sign-flip and scale: the factor; gaussian: the noise's std

    def __post_init__(self) -> None:
        self._check("fraction", 0 <= self.fraction <= 1, "a fraction in [0, 1]")
        self._check("scale", self.scale > 0, "a number > 0")


@dataclass(frozen=True)
class StopConfig(_Section):
    _section: ClassVar[str] = "stop"
    accuracy_delta: float = 0.0
    loss_delta: float = 0.0
    patience: int = 1

    def __post_init__(self) -> None:
        self._check("accuracy_delta", self.accuracy_delta >= 0, "a number >= 0 (0 disables)")
        self._check("loss_delta", self.loss_delta >= 0, "a number >= 0 (0 disables)")
        self._check("patience", self.patience >= 1, "an integer >= 1")


@dataclass(frozen=True)
class RunConfig(_Section):
    _section: ClassVar[str] = "run"
    engine: Literal["auto", "sequential", "vmap"] = "auto"
    device: str = "auto"
    threads: int = 0
    workers: int = 0  # clients trained at once in threads (sequential engine); 0 = chosen
    eval_batch_size: int = 256
    out: str = "runs"
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # multi-process runs: auto = nccl on GPU
    timeout_s: float = 300.0  # how long a collective may wait for the other ranks
    vmap_chunk: int = 0
    profile: bool = False
    eval_clients: Literal["members", "all"] = "members"
    # how convolution weights are laid out: auto = channels_last for conv models on CPU
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"
    # evaluation on CPU: blocked = the convolutional stem in oneDNN's blocked layout
    eval_layout: Literal["auto", "blocked", "dense"] = "auto"
    checkpoint_every: int = 1  # rounds between checkpoints (the last round always has one)

    def __post_init__(self) -> None:
        ok = self.device in ("auto", "cpu", "cuda") or (
            self.device.startswith("cuda:") and self.device[5:].isdigit()
        )
        self._check("device", ok, '"auto", "cpu", "cuda" or "cuda:N"')
        most = MACHINE_OVERSUBSCRIPTION * (os.cpu_count() or 1)  # beyond it, only harm
        self._check("threads", 0 <= self.threads <= most,
                    f"an integer in [0, {most}] (0 = chosen per model; at most "
                    f"{MACHINE_OVERSUBSCRIPTION} x this machine's {os.cpu_count() or 1} cores)")
        self._check("workers", 0 <= self.workers <= most,
                    f"an integer in [0, {most}] (0 = chosen per model; at most "
                    f"{MACHINE_OVERSUBSCRIPTION} x this machine's {os.cpu_count() or 1} cores)")
        self._check("eval_batch_size", self.eval_batch_size >= 1, "an integer >= 1")
        self._check("timeout_s", 0 < self.timeout_s <= MAX_TIMEOUT_S,
                    f"a number of seconds in (0, {MAX_TIMEOUT_S:g}] (30 days; a collective "
                    "that waits longer has hung)")
        self._check("checkpoint_every", self.checkpoint_every >= 1,
                    "an integer >= 1 (rounds between checkpoints)")
        self._check("vmap_chunk", self.vmap_chunk >= 0,
                    "an integer >= 0 (clients trained at once by the vmap engine; 0 = all)")
