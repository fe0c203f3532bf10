"""The reporting sections of the config: figures, TensorBoard, experiment trackers (MLflow,
Weights & Biases) and push notifications."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from .. import secrets
from .base import ConfigError, _Section

__all__ = ["MlflowConfig", "NotifyConfig", "PlotsConfig", "TelegramConfig", "TensorBoardConfig",
           "WandbConfig", "WebhookConfig"]


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


def _unmasked(key: str, value: str, env: str, url: bool = False) -> None:
    """A saved config.toml's ``***`` is not a secret: refuse it, naming the variable."""
    if secrets.is_masked(value, url):
        raise ConfigError(f"{key} holds {secrets.MASK}, the mask a saved config.toml carries "
                          f"instead of the secret: set {env} in the environment (it wins "
                          "over the file), or give the value as an override")


@dataclass(frozen=True)
class MlflowConfig(_Section):
    """An MLflow run per fedcluster run (callbacks/mlflow_tracker.py; the ``mlflow`` extra)."""

    _section: ClassVar[str] = "mlflow"
    enabled: bool = False
    # "": MLflow's own default (MLFLOW_TRACKING_URI, else a store in the current directory:
    # sqlite:///mlflow.db with artifacts in ./mlruns in MLflow 3, the ./mlruns files in 2);
    # or http://host:port of an `mlflow server`, sqlite:///path.db, databricks, ...
    tracking_uri: str = ""
    experiment: str = "fedcluster"
    timeout_s: float = 10.0  # per request to a tracking server (2 retries); then it gives up

    def __post_init__(self) -> None:
        self._check("experiment", bool(self.experiment.strip()), "a non-empty experiment name")
        self._check("timeout_s", self.timeout_s > 0, "a number of seconds > 0")


@dataclass(frozen=True)
class WandbConfig(_Section):
    """A Weights & Biases run per fedcluster run (callbacks/wandb_tracker.py; the ``wandb``
    extra). Offline by default: written to disk, uploaded later with ``wandb sync``."""

    _section: ClassVar[str] = "wandb"
    enabled: bool = False
    mode: Literal["offline", "online"] = "offline"
    project: str = "fedcluster"
    entity: str = ""  # "": the account's default (online)
    dir: str = ""  # "": the run directory (its wandb/ folder), else the current directory

    def __post_init__(self) -> None:
        self._check("project", bool(self.project.strip()), "a non-empty project name")


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
        _unmasked("notify.telegram.token", self.token, "FEDCLUSTER_TELEGRAM_TOKEN")
        _unmasked("notify.telegram.proxy", self.proxy,
                  "FEDCLUSTER_PROXY_PASSWORD or FEDCLUSTER_TELEGRAM_PROXY", url=True)
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
        _unmasked("notify.webhook.url", self.url, "FEDCLUSTER_WEBHOOK_URL")
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
