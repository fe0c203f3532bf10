"""Telegram bot messages (``sendMessage``), plain text, through an optional proxy.

The API base URL is configurable, for self-hosted Bot API servers (and tests).
The token is part of the request path, so it is never put into an error text.
"""

from __future__ import annotations

from ..secrets import url_secrets
from .base import Message, RetryAfter, SendError
from .transport import make_session, post, retry_after

__all__ = ["TelegramNotifier"]


class TelegramNotifier:
    name = "telegram"
    max_chars = 4096

    def __init__(self, token: str, chat_id: str | int, api_url: str = "https://api.telegram.org",
                 proxy: str = "", timeout: float = 10.0, min_interval: float = 1.0) -> None:
        self._url = f"{api_url.rstrip('/')}/bot{token}/sendMessage"
        self.secrets = [token, *url_secrets(proxy)]
        self.chat_id = str(chat_id)
        self.timeout = timeout
        self.min_interval = min_interval  # Telegram allows about one message per second per chat
        self._session = make_session(proxy)

    def send(self, message: Message) -> None:
        body = {"chat_id": self.chat_id, "text": message.text, "disable_web_page_preview": True}
        response = post(self._session, self._url, body, self.timeout)
        if response.status_code == 429:
            raise RetryAfter(retry_after(response))
        if response.status_code >= 400:
            raise SendError(f"HTTP {response.status_code}: {_description(response)}")

    def close(self) -> None:
        self._session.close()


def _description(response: object) -> str:
    """Telegram's error description (it never repeats the token), else the reason."""
    try:
        desc = response.json().get("description")  # type: ignore[attr-defined]
    except (ValueError, AttributeError):
        desc = None
    return str(desc or getattr(response, "reason", "") or "error")[:200]
