"""Secrets in the config (bot token, proxy password, webhook URL): read from environment
variables, which win over the file, and masked wherever the config or an error is shown.

Environment variables: ``FEDCLUSTER_TELEGRAM_TOKEN``, ``FEDCLUSTER_TELEGRAM_PROXY`` (a
whole proxy URL), ``FEDCLUSTER_PROXY_PASSWORD`` (the password of the proxy URL) and
``FEDCLUSTER_WEBHOOK_URL``. A saved ``config.toml`` holds ``***`` in their place, which is
refused as a value (:func:`is_masked`): rerunning it takes them from the environment. They
carry credentials only: a service is turned on by the config (``notify.telegram.chat_id``,
``notify.webhook.url``), so a variable set in a shell never makes every run push.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

__all__ = [
    "ENV_KEYS",
    "MASK",
    "PROXY_PASSWORD_ENV",
    "PROXY_SCHEMES",
    "apply_env",
    "is_masked",
    "mask_text",
    "mask_url",
    "proxy_problem",
    "url_secrets",
]

MASK = "***"
PROXY_PASSWORD_ENV = "FEDCLUSTER_PROXY_PASSWORD"
ENV_KEYS: dict[str, tuple[str, ...]] = {
    "FEDCLUSTER_TELEGRAM_TOKEN": ("notify", "telegram", "token"),
    "FEDCLUSTER_TELEGRAM_PROXY": ("notify", "telegram", "proxy"),
    "FEDCLUSTER_WEBHOOK_URL": ("notify", "webhook", "url"),
}
PROXY_SCHEMES = ("socks5", "socks5h", "http", "https")


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for part in path[:-1]:
        if not isinstance(node.get(part, {}), dict):
            raise ValueError(f"{'.'.join(path[:-1])} must be a table of keys in the config")
        node = node.setdefault(part, {})
    node[path[-1]] = value


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """A copy of the raw config ``data`` with the secrets set in ``environ`` filled in.

    Empty variables are ignored. Raises ValueError when a proxy password is given for a
    proxy URL that has no user name (or there is no proxy at all).
    """
    out = copy.deepcopy(data)
    for var, path in ENV_KEYS.items():
        if environ.get(var):
            _set(out, path, environ[var])
    password = environ.get(PROXY_PASSWORD_ENV)
    if password:
        proxy = out.get("notify", {}).get("telegram", {}).get("proxy", "")
        parts = urlsplit(proxy) if isinstance(proxy, str) else None
        if not parts or not parts.username:
            raise ValueError(f"{PROXY_PASSWORD_ENV} is set, but notify.telegram.proxy has no "
                             "user name to go with it (expected scheme://user@host:port)")
        host = parts.netloc.rpartition("@")[2]
        netloc = f"{quote(unquote(parts.username), safe='')}:{quote(password, safe='')}@{host}"
        _set(out, ("notify", "telegram", "proxy"), urlunsplit(parts._replace(netloc=netloc)))
    return out


def is_masked(value: str, url: bool = False) -> bool:
    """Whether ``value`` is the mask a saved config carries (``***``; for a URL, ``***``
    as its password) rather than a secret."""
    if value == MASK:
        return True
    try:
        return url and urlsplit(value).password == MASK
    except ValueError:
        return False


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{MASK}@{host}"))


def url_secrets(url: str) -> list[str]:
    """The secret pieces of a proxy URL: its password, raw and percent-encoded."""
    password = urlsplit(url).password if url else None
    return [] if not password else [password, unquote(password), quote(unquote(password), safe="")]


def proxy_problem(url: str) -> str | None:
    """Why ``url`` is not a usable proxy URL, or None when it is fine. Never shows the
    password."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "a port number after the host"
    if parts.scheme not in PROXY_SCHEMES:
        return "a URL starting with " + ", ".join(f"{s}://" for s in PROXY_SCHEMES)
    if not parts.hostname:
        return "a host name, as in scheme://[user:password@]host:port"
    if port is None and parts.scheme.startswith("socks"):
        return "a port for the SOCKS proxy, as in socks5://host:1080"
    return None


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret replaced by ``***`` (longest first)."""
    for s in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(s, MASK)
    return text
