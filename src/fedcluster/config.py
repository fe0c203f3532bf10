"""The typed, frozen run configuration: loading, overrides and validation.

A config is read from TOML or JSON, ``section.key=value`` overrides are applied
(values are TOML values, typed to the declared field), and every value is checked
before any work starts. Errors name the key, the value and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

import tomli_w

from . import secrets
from .registry import did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "ClientConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "NotifyConfig",
    "PlotsConfig",
    "RunConfig",
    "ServerConfig",
    "StopConfig",
    "TelegramConfig",
    "TensorBoardConfig",
    "WebhookConfig",
    "config_to_toml",
    "load_config",
    "parse_overrides",
]


class ConfigError(ValueError):
    """A config value is missing, of the wrong type, or out of range."""


def _require(section: str, name: str, ok: bool, value: Any, expected: str) -> None:
    if not ok:
        key = f"{section}.{name}" if section else name
        raise ConfigError(f"{key} = {value!r}: expected {expected}")


class _Section:
    """Mixin giving each config section a dotted key prefix for its errors."""

    _section: ClassVar[str] = ""

    def _check(self, name: str, ok: bool, expected: str) -> None:
        _require(self._section, name, ok, getattr(self, name), expected)


@dataclass(frozen=True)
class DataConfig(_Section):
    _section: ClassVar[str] = "data"
    dataset: str = "digits"
    root: str = "data"
    num_clients: int = 20
    partition: Literal["iid", "dirichlet", "shards", "local"] = "dirichlet"
    alpha: float = 0.5
    shards_per_client: int = 2
    min_size: int = 10
    download: bool = False
    augment: bool = True
    verify: bool = True
    folder: str = ""
    image_size: int = 224
    workers: int = 2
    shift: Literal["none", "rotate", "permute-labels"] = "none"
    groups: int = 1
    replicate: bool = True
    normalize: bool = True  # false: inputs scaled to [0, 1] only

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
class ServerConfig(_Section):
    _section: ClassVar[str] = "server"
    clients_per_round: int | float = 1.0
    lr: float = 1.0

    def __post_init__(self) -> None:
        c = self.clients_per_round
        if isinstance(c, float):
            self._check("clients_per_round", 0 < c <= 1, "a count >= 1 or a fraction in (0, 1]")
        else:
            self._check("clients_per_round", c >= 1, "a count >= 1 or a fraction in (0, 1]")
        self._check("lr", self.lr > 0, "a number > 0")


@dataclass(frozen=True)
class ClusterConfig(_Section):
    _section: ClassVar[str] = "cluster"
    k: int | Literal["auto"] = 2
    k_max: int = 8
    method: Literal["kmeans", "ifca", "cfl", "hierarchical"] = "kmeans"
    schedule: Literal["auto", "every-round", "once"] = "auto"
    features: Literal["weights", "updates"] = "weights"
    reduce: Literal["pca2", "sketch", "none"] = "pca2"
    metric: Literal["euclidean", "cosine"] = "euclidean"
    sketch_dim: int = 256
    n_init: int = 10
    warmup_rounds: int = 0
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
        self._check("warmup_rounds", self.warmup_rounds >= 0, "an integer >= 0")
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
    def resolved_schedule(self) -> str:
        """``auto`` is ``once`` for one-shot hierarchical clustering, else ``every-round``."""
        if self.schedule != "auto":
            return self.schedule
        return "once" if self.method == "hierarchical" else "every-round"


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
    eval_batch_size: int = 256
    out: str = "runs"
    backend: Literal["auto", "gloo", "nccl"] = "auto"  # multi-process runs: auto = nccl on GPU
    timeout_s: float = 300.0  # how long a collective may wait for the other ranks
    vmap_chunk: int = 0
    profile: bool = False
    eval_clients: Literal["members", "all"] = "members"

    def __post_init__(self) -> None:
        ok = self.device in ("auto", "cpu", "cuda") or (
            self.device.startswith("cuda:") and self.device[5:].isdigit()
        )
        self._check("device", ok, '"auto", "cpu", "cuda" or "cuda:N"')
        self._check("threads", self.threads >= 0, "an integer >= 0 (0 = chosen per model)")
        self._check("eval_batch_size", self.eval_batch_size >= 1, "an integer >= 1")
        self._check("timeout_s", self.timeout_s > 0, "a number of seconds > 0")
        self._check("vmap_chunk", self.vmap_chunk >= 0,
                    "an integer >= 0 (clients trained at once by the vmap engine; 0 = all)")


@dataclass(frozen=True)
class PlotsConfig(_Section):
    """Figures in ``<run>/figures`` and ``<run>/report.html``, drawn when the run ends."""

    _section: ClassVar[str] = "plots"
    enabled: bool = True
    every: int = 5  # rounds between per-round cluster figures (the last round always); 0: last
    report: bool = True

    def __post_init__(self) -> None:
        self._check("every", self.every >= 0, "an integer >= 0 (0 = the last round only)")


@dataclass(frozen=True)
class TensorBoardConfig(_Section):
    _section: ClassVar[str] = "tensorboard"
    enabled: bool = False


@dataclass(frozen=True)
class TelegramConfig(_Section):
    """Telegram bot messages; on when chat_id is set. Secrets never show in its repr."""

    _section: ClassVar[str] = "notify.telegram"
    chat_id: str | int = ""
    token: str = field(default="", repr=False)
    api_url: str = "https://api.telegram.org"
    proxy: str = field(default="", repr=False)
    every: int = 1  # rounds between summaries; 0 = start, end and errors only

    def __post_init__(self) -> None:
        self._check("every", self.every >= 0, "an integer >= 0 (0 = start, end, errors only)")
        self._check("api_url", self.api_url.startswith(("http://", "https://")),
                    "an http:// or https:// URL")
        if self.enabled and not self.token:
            raise ConfigError("notify.telegram.chat_id is set but the bot token is missing: set "
                              "notify.telegram.token or the FEDCLUSTER_TELEGRAM_TOKEN variable")
        if any(ch.isspace() or ch == "/" for ch in self.token):
            raise ConfigError("notify.telegram.token (hidden): expected a bot token without "
                              "spaces or '/'")
        why = secrets.proxy_problem(self.proxy) if self.proxy else None
        if why:
            raise ConfigError(f"notify.telegram.proxy = {secrets.mask_url(self.proxy)!r}: "
                              f"expected {why}")

    @property
    def enabled(self) -> bool:
        return str(self.chat_id) != ""


@dataclass(frozen=True)
class WebhookConfig(_Section):
    """A JSON POST per message to ``url`` (kept out of repr: such URLs often hold a key)."""

    _section: ClassVar[str] = "notify.webhook"
    url: str = field(default="", repr=False)
    every: int = 1

    def __post_init__(self) -> None:
        self._check("every", self.every >= 0, "an integer >= 0 (0 = start, end, errors only)")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"notify.webhook.url = {secrets.mask_url(self.url)!r}: expected "
                              "an http:// or https:// URL")


@dataclass(frozen=True)
class NotifyConfig(_Section):
    _section: ClassVar[str] = "notify"
    telegram: TelegramConfig = field(default_factory=TelegramConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)

    def secrets(self) -> list[str]:
        """Every secret value in this section, for masking text that might contain them."""
        t, w = self.telegram, self.webhook
        return [s for s in (t.token, w.url, *secrets.url_secrets(t.proxy)) if s]


@dataclass(frozen=True)
class Config(_Section):
    name: str = "digits"
    seed: int = 0
    rounds: int = 20
    mode: Literal["federated", "centralized"] = "federated"
    plugins: list[str] = field(default_factory=list)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    stop: StopConfig = field(default_factory=StopConfig)
    run: RunConfig = field(default_factory=RunConfig)
    plots: PlotsConfig = field(default_factory=PlotsConfig)
    tensorboard: TensorBoardConfig = field(default_factory=TensorBoardConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)

    def __post_init__(self) -> None:
        ok_name = bool(self.name) and all(ch.isalnum() or ch in "-_." for ch in self.name)
        self._check("name", ok_name, "a non-empty name of letters, digits, '-', '_', '.'")
        self._check("seed", self.seed >= 0, "an integer >= 0")
        self._check("rounds", self.rounds >= 1, "an integer >= 1")
        n = self.data.num_clients
        k = self.cluster.k_initial if self.cluster.k != "auto" else 1
        _require("cluster", "k", k <= n, self.cluster.k, f"at most data.num_clients = {n}")
        c = self.server.clients_per_round
        if isinstance(c, int):
            _require("server", "clients_per_round", c <= n, c, f"at most data.num_clients = {n}")
        _require("server", "clients_per_round", self.clients_per_round >= k, c,
                 f"enough clients per round ({self.clients_per_round} now) "
                 f"to form cluster.k = {self.cluster.k} clusters")

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
        return out


# ---------------------------------------------------------------- loading

# Names people bring from the reference program and other tools, for did-you-mean hints.
_KNOWN_AS = {"lambda": "lr", "server_lr": "lr", "global_epochs": "rounds", "epochs": "rounds",
             "num_clusters": "k", "clusters": "k", "model_name": "name", "type": "dataset"}


def _unknown_key(key: str, prefix: str, names: list[str]) -> ConfigError:
    hint = did_you_mean(key, names)
    if not hint:
        alias = difflib.get_close_matches(key, list(_KNOWN_AS), n=1, cutoff=0.7)
        if alias and _KNOWN_AS[alias[0]] in names:
            hint = f" (did you mean {_KNOWN_AS[alias[0]]!r}?)"
    where = f" in [{prefix.rstrip('.')}]" if prefix else ""
    return ConfigError(f"unknown key {prefix}{key}{hint}; known keys{where}: " + ", ".join(names))


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if get_origin(tp) is list:
        return f"a list of {_type_name(get_args(tp)[0])}s"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp)
    )


_NO = object()


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` as type ``tp``, or ``_NO`` when it does not fit."""
    origin = get_origin(tp)
    if origin is Literal:
        return value if value in get_args(tp) else _NO
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            out = _coerce(value, arg)
            if out is not _NO:
                return out
        return _NO
    if origin is list:
        if not isinstance(value, list):
            return _NO
        items = [_coerce(v, get_args(tp)[0]) for v in value]
        return _NO if any(i is _NO for i in items) else items
    if tp is bool:
        return value if isinstance(value, bool) else _NO
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _NO
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else _NO
    if tp is str:
        return value if isinstance(value, str) else _NO
    raise TypeError(f"unsupported config type {tp}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"[{prefix.rstrip('.')}] must be a table of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise _unknown_key(key, prefix, names)
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        tp, value = hints[name], data[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, f"{prefix}{name}.")
            continue
        out = _coerce(value, tp)
        if out is _NO:
            raise ConfigError(f"{prefix}{name} = {value!r}: expected {_type_name(tp)}")
        kwargs[name] = out
    return cls(**kwargs)


def _field_type(path: list[str]) -> Any:
    """The declared type at a dotted key path, or raise ConfigError for unknown keys."""
    cls: Any = Config
    for i, part in enumerate(path):
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(
                f"unknown key {'.'.join(path)}: {'.'.join(path[:i])} is not a section"
            )
        names = [f.name for f in dataclasses.fields(cls)]
        if part not in names:
            raise _unknown_key(part, "".join(f"{p}." for p in path[:i]), names)
        cls = typing.get_type_hints(cls)[part]
    return cls


def parse_overrides(items: list[str]) -> list[tuple[list[str], Any]]:
    """Parse ``section.key=value`` strings; values are TOML, strings may go unquoted."""
    out = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        path = key.split(".")
        tp = _field_type(path)
        if dataclasses.is_dataclass(tp):
            raise ConfigError(f"override {item!r}: {key} is a section; set one of its keys")
        text = text.strip()
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # a bare word such as mnist or sgd
        if _coerce(value, tp) is _NO and _coerce(text, tp) is not _NO:
            value = text  # e.g. name=123 for a string field
        out.append((path, value))
    return out


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise ConfigError(f"config file {str(path)!r} is not valid {kind}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table of keys at the top")
    return data


def _check_names(cfg: Config) -> None:
    """Plugins load, and names that refer to registries (datasets, models) exist."""
    from .data import DATASETS
    from .models import MODELS
    from .plugins import load_plugin

    for ref in cfg.plugins:
        load_plugin(ref)
    if cfg.data.dataset not in DATASETS:
        raise ConfigError(f"data.dataset: {DATASETS.unknown_message(cfg.data.dataset)}")
    if cfg.model.name not in MODELS:
        raise ConfigError(f"model.name: {MODELS.unknown_message(cfg.model.name)}")
    if isinstance(cfg.model.pretrained, str) and not Path(cfg.model.pretrained).is_file():
        raise ConfigError(f"model.pretrained = {cfg.model.pretrained!r}: file not found")


def load_config(path: str | Path | None = None, overrides: list[str] = (),
                environ: Mapping[str, str] | None = None, plugins: list[str] = ()) -> Config:
    """Load and validate a config; ``path=None`` starts from the built-in defaults.

    Secrets in environment variables (``environ``, default ``os.environ``; see
    :mod:`fedcluster.secrets`) win over the file and the overrides. A JSON file in the
    reference program's ``conf.json`` format is mapped first (see :mod:`fedcluster.legacy`).
    ``plugins`` (files or modules, e.g. from ``--plugin``) are added to the config's own;
    relative plugin files are relative to the config file.
    """
    from .legacy import from_legacy, is_legacy
    from .plugins import resolve_plugins

    data = _read_file(Path(path)) if path is not None else {}
    if path is not None and Path(path).suffix.lower() == ".json" and is_legacy(data):
        data = from_legacy(data)
    for keys, value in parse_overrides(list(overrides)):
        node = data
        for part in keys[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {'.'.join(keys)}: {part} is not a table in the file")
        node[keys[-1]] = value
    try:
        data = secrets.apply_env(data, os.environ if environ is None else environ)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    base = Path(path).parent if path is not None else Path.cwd()
    data["plugins"] = resolve_plugins(data.get("plugins", []), base, plugins)
    cfg = _build(Config, data, "")
    _check_names(cfg)
    return cfg


def config_to_toml(cfg: Config) -> str:
    """The resolved config as TOML, secrets masked (they come back from the environment)."""
    return tomli_w.dumps(cfg.to_dict())
