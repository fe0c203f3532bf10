"""HTTP plumbing shared by the services: a requests session with an optional proxy,
and the checks that turn a missing SOCKS dependency into an install hint."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import requests

__all__ = ["MissingDependency", "check_proxy_support", "make_session", "post", "retry_after"]

SOCKS_HINT = ('SOCKS proxies need PySocks: pip install "requests[socks]" '
              '(or pip install "fedcluster[socks]")')


class MissingDependency(RuntimeError):
    """An optional package a feature needs is not installed; the message says how to add it."""


def check_proxy_support(proxy: str) -> None:
    """Raise MissingDependency when ``proxy`` is a SOCKS URL and PySocks is missing."""
    if urlsplit(proxy).scheme.startswith("socks") and importlib.util.find_spec("socks") is None:
        raise MissingDependency(SOCKS_HINT)


def make_session(proxy: str = "") -> requests.Session:
    """A session sending every request through ``proxy`` (any of socks5, socks5h, http,
    https) when one is given, and through that proxy only: the environment's
    (``HTTP(S)_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, netrc) is then ignored, since requests
    would otherwise let an environment proxy win over the session's. Without a configured
    proxy the environment's applies, as for any requests program. Send with
    :func:`post`, which also names the proxy on each request."""
    import requests  # here: 50 ms of start-up for runs that push nothing

    check_proxy_support(proxy)
    session = requests.Session()
    if proxy:
        session.proxies = {"http": proxy, "https": proxy}
        session.trust_env = False
    return session


def post(session: requests.Session, url: str, body: dict, timeout: float
         ) -> requests.Response:
    """POST ``body`` as JSON; with a configured proxy, through it and no other."""
    return session.post(url, json=body, timeout=timeout, proxies=session.proxies or None)


def retry_after(response: requests.Response, default: float = 1.0) -> float:
    """Seconds to wait after a 429: Telegram's ``parameters.retry_after``, else the
    Retry-After header, else ``default``."""
    try:
        body = response.json()
        value = body.get("parameters", {}).get("retry_after") if isinstance(body, dict) else None
        if value is not None:
            return max(0.0, float(value))
    except (ValueError, AttributeError, TypeError):
        pass
    try:
        return max(0.0, float(response.headers.get("Retry-After", default)))
    except (TypeError, ValueError):
        return default
