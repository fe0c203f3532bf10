"""A generic webhook: each message is one JSON POST ``{"event", "text", ...data}``."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..secrets import url_secrets
from .base import Message, RetryAfter, SendError
from .transport import make_session, post, retry_after

__all__ = ["WebhookNotifier"]


class WebhookNotifier:
    name = "webhook"
    max_chars = None

    def __init__(self, url: str, timeout: float = 10.0, min_interval: float = 0.0,
                 proxy: str = "") -> None:
        self._url = url
        parts = urlsplit(url)
        self.host = parts.netloc.rpartition("@")[2]  # for logs: path and query may hold a key
        key = parts.path.strip("/") + (f"?{parts.query}" if parts.query else "")
        self.secrets = [url, *([key] if len(key) >= 8 else []), *url_secrets(proxy)]
        self.timeout = timeout
        self.min_interval = min_interval
        self._session = make_session(proxy)

    def send(self, message: Message) -> None:
        body = {"event": message.event, "text": message.text, **message.data}
        response = post(self._session, self._url, body, self.timeout)
        if response.status_code == 429:
            raise RetryAfter(retry_after(response))
        if response.status_code >= 400:
            raise SendError(f"HTTP {response.status_code} from {self.host}: "
                            f"{str(response.reason)[:200]}")

    def close(self) -> None:
        self._session.close()
