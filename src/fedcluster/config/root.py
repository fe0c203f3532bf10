"""The whole config: top-level keys and one field per section."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import secrets
from .base import _require, _Section
from .privacy import PrivacyConfig
from .reporting import MlflowConfig, NotifyConfig, PlotsConfig, TensorBoardConfig, WandbConfig
from .sections import (
    AlgorithmConfig,
    AttackConfig,
    ClientConfig,
    ClusterConfig,
    DataConfig,
    ModelConfig,
    RunConfig,
    ServerConfig,
    StopConfig,
)

__all__ = ["Config"]


@dataclass(frozen=True)
class Config(_Section):
    name: str = ""  # "": derived from the run (see derived_name)
    seed: int = 0
    rounds: int = 20
    mode: Literal["federated", "centralized"] = "federated"
    plugins: list[str] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    stop: StopConfig = field(default_factory=StopConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    run: RunConfig = field(default_factory=RunConfig)
    plots: PlotsConfig = field(default_factory=PlotsConfig)
    tensorboard: TensorBoardConfig = field(default_factory=TensorBoardConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)

    def __post_init__(self) -> None:
        if not self.name:  # frozen: set once, here, so that every reader sees the name
            object.__setattr__(self, "name", self.derived_name())
        ok_name = bool(self.name) and all(ch.isalnum() or ch in "-_." for ch in self.name)
        self._check("name", ok_name, "a non-empty name of letters, digits, '-', '_', '.'")
        self._check("seed", self.seed >= 0, "an integer >= 0")
        self._check("rounds", self.rounds >= 1, "an integer >= 1")
        _require("algorithm", "name", self.mode == "federated" or self.algorithm.name == "fedavg",
                 self.algorithm.name, '"fedavg" with mode = "centralized" (no clients)')
        _require("algorithm", "name", self.algorithm.name != "scaffold" or (
            self.client.optimizer == "sgd" and self.client.momentum == 0), self.algorithm.name,
            'client.optimizer = "sgd" with client.momentum = 0 for "scaffold" (its control '
            "variates are estimated from plain SGD steps)")
        _require("algorithm", "name", self.algorithm.name != "scaffold" or
                 self.data.partition != "local", self.algorithm.name,
                 'another algorithm with data.partition = "local" (every rank updates every '
                 "client's control variate, so every rank must know every client's data size)")
        s = self.server
        _require("algorithm", "name", self.algorithm.name != "feddyn" or (
            s.optimizer == "fedavg" and s.lr == 1 and s.aggregator == "mean"),
            self.algorithm.name, 'server.optimizer = "fedavg", server.lr = 1 and '
            'server.aggregator = "mean" for "feddyn" (its server step is the plain mean '
            f"corrected by its state; got {s.optimizer!r}, {s.lr}, {s.aggregator!r})")
        n = self.data.num_clients
        k = self.cluster.k_initial if self.cluster.k != "auto" else 1
        _require("cluster", "k", k <= n, self.cluster.k, f"at most data.num_clients = {n}")
        c = self.server.clients_per_round
        if isinstance(c, int):
            _require("server", "clients_per_round", c <= n, c, f"at most data.num_clients = {n}")
        _require("server", "min_clients", self.server.min_clients <= self.clients_per_round,
                 self.server.min_clients,
                 f"at most the clients per round ({self.clients_per_round})")
        need = {"krum": ("n > 2f + 2", 2 * self.server.byzantine + 3),
                "multi-krum": ("n > 2f + 2", 2 * self.server.byzantine + 3),
                "bulyan": ("n >= 4f + 3", 4 * self.server.byzantine + 3)}
        if self.server.aggregator in need:
            rule, least = need[self.server.aggregator]
            _require("server", "byzantine", self.clients_per_round >= least,
                     self.server.byzantine,
                     f"small enough for server.aggregator = {self.server.aggregator!r} over "
                     f"n = {self.clients_per_round} clients per round ({rule})")
        _require("server", "byzantine", self.server.mixing == "none" or
                 self.clients_per_round > 2 * self.server.byzantine, self.server.byzantine,
                 f"less than half of the n = {self.clients_per_round} clients per round for "
                 f"server.mixing = \"nnm\" (n > 2f)")
        a = self.attack
        _require("attack", "fraction", a.kind == "none" or round(a.fraction * n) >= 1,
                 a.fraction, f"a fraction that makes at least one of data.num_clients = {n} "
                 f"clients an attacker (attack.kind = {a.kind!r})")
        self._check_privacy()
        _require("server", "clients_per_round", self.clients_per_round >= k, c,
                 f"enough clients per round ({self.clients_per_round} now) "
                 f"to form cluster.k = {self.cluster.k} clusters")

    def _check_privacy(self) -> None:
        p = self.privacy
        if not p.enabled:
            return
        _require("privacy", "enabled", self.mode == "federated", p.enabled,
                 'false with mode = "centralized" (DP-FedAvg protects clients\' updates)')
        _require("privacy", "enabled", self.server.aggregator == "mean", p.enabled,
                 f"false with server.aggregator = {self.server.aggregator!r} (DP-FedAvg "
                 'noises the clipped mean; use server.aggregator = "mean")')
        _require("privacy", "enabled", self.cluster.restarts == 1, p.enabled,
                 "false with cluster.restarts > 1 (restarts are chosen by the clients' "
                 "losses, which no noise covers)")
        count = p.count_noise or self.clients_per_round / 20
        _require("privacy", "noise_multiplier", not p.adaptive or p.noise_multiplier < 2 * count,
                 p.noise_multiplier, f"less than 2 x privacy.count_noise = {2 * count:g} with "
                 "privacy.adaptive = true (raise privacy.count_noise)")

    def derived_name(self) -> str:
        """The run's name when ``name`` is not given: ``<dataset>-<method>-k<k>``
        (``<dataset>-centralized`` for the pooled baseline), e.g. ``mnist-ifca-k3``."""
        what = "centralized" if self.mode == "centralized" else (
            f"{self.cluster.method}-k{self.cluster.k}")
        raw = f"{self.data.dataset}-{what}"
        return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in raw)

    @property
    def clients_per_round(self) -> int:
        """The number of clients sampled each round, resolved from a count or a fraction."""
        c = self.server.clients_per_round
        if isinstance(c, float):
            return max(1, round(c * self.data.num_clients))
        return c

    def to_dict(self, reveal_secrets: bool = False) -> dict[str, Any]:
        """The config as plain data; secrets are masked (``***``) unless asked for."""
        out = dataclasses.asdict(self)
        if not reveal_secrets:
            tg, hook = out["notify"]["telegram"], out["notify"]["webhook"]
            tg["token"] = secrets.MASK if tg["token"] else ""
            tg["proxy"] = secrets.mask_url(tg["proxy"])
            hook["url"] = secrets.MASK if hook["url"] else ""
            out["mlflow"]["tracking_uri"] = secrets.mask_url(out["mlflow"]["tracking_uri"])
        return out
