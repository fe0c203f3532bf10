"""The reference program's push keys (its ``conf.json``) as fedcluster's ``[notify]`` table.

``is_push_enable`` + ``push_type = "telegram"`` turn Telegram on; ``telegram_id`` is the
chat id and ``api_key`` the bot token; ``proxy_type``, ``proxy_host``, ``proxy_port``,
``proxy_username`` and ``proxy_password`` become one proxy URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

__all__ = ["REFERENCE_PUSH_KEYS", "notify_from_reference"]

REFERENCE_PUSH_KEYS = ("is_push_enable", "push_type", "proxy_type", "proxy_host", "proxy_port",
                       "proxy_username", "proxy_password", "telegram_id", "api_key")


def _proxy_url(conf: dict[str, Any]) -> str:
    host = str(conf.get("proxy_host") or "")
    if not host:
        return ""
    scheme = str(conf.get("proxy_type") or "http").lower()
    port = conf.get("proxy_port")
    user = str(conf.get("proxy_username") or "")
    password = str(conf.get("proxy_password") or "")
    auth = ""
    if user:
        auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "") + "@"
    return f"{scheme}://{auth}{host}" + (f":{port}" if port not in (None, "") else "")


def notify_from_reference(conf: dict[str, Any]) -> dict[str, Any]:
    """The ``notify`` table for a reference ``conf.json`` (empty when pushing is off).

    Raises ValueError for a push type fedcluster does not know.
    """
    if not conf.get("is_push_enable"):
        return {}
    kind = str(conf.get("push_type") or "telegram").lower()
    if kind != "telegram":
        raise ValueError(f"push_type = {conf.get('push_type')!r}: expected 'telegram'")
    telegram: dict[str, Any] = {"chat_id": str(conf.get("telegram_id") or "")}
    if conf.get("api_key"):
        telegram["token"] = str(conf["api_key"])
    proxy = _proxy_url(conf)
    if proxy:
        telegram["proxy"] = proxy
    return {"telegram": telegram}
