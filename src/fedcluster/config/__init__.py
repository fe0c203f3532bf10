"""The typed, frozen run configuration: loading, overrides and validation.

A config is read from TOML or JSON, ``section.key=value`` overrides are applied
(values are TOML values, typed to the declared field), and every value is checked
before any work starts. Errors name the key, the value and what was expected.
"""

from .base import ConfigError
from .load import config_to_toml, load_config, parse_overrides
from .reporting import (
    MlflowConfig,
    NotifyConfig,
    PlotsConfig,
    TelegramConfig,
    TensorBoardConfig,
    WandbConfig,
    WebhookConfig,
)
from .root import Config
from .sections import (
                       ClientConfig,
                       ClusterConfig,
                       DataConfig,
                       ModelConfig,
                       RunConfig,
                       ServerConfig,
                       StopConfig,
)

__all__ = [
    "ClientConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "MlflowConfig",
    "ModelConfig",
    "NotifyConfig",
    "PlotsConfig",
    "RunConfig",
    "ServerConfig",
    "StopConfig",
    "TelegramConfig",
    "TensorBoardConfig",
    "WandbConfig",
    "WebhookConfig",
    "config_to_toml",
    "load_config",
    "parse_overrides",
]
