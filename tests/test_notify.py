"""Notification services and the background sender, against a real local HTTP server."""

from __future__ import annotations

import base64
import importlib.util
import logging
import time

import pytest
from http_recorder import Recorder, closed_port

from fedcluster.callbacks.notifications import notifiers_from_config
from fedcluster.config import ConfigError, load_config
from fedcluster.notify import (
    Message,
    RetryAfter,
    Sender,
    TelegramNotifier,
    WebhookNotifier,
    split_text,
)
from fedcluster.notify.base import text_units

TOKEN = "123456:SECRET-token-abc"


@pytest.fixture(autouse=True)
def _no_env_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def test_split_text_respects_limit_and_prefers_line_breaks() -> None:
    text = "\n".join(f"line {i:03d} " + "x" * 20 for i in range(100))
    pieces = split_text(text, 100)
    assert all(text_units(p) <= 100 for p in pieces)
    assert "\n".join(pieces) == text  # cut only at line breaks here
    long_line = "y" * 250
    assert split_text(long_line, 100) == ["y" * 100, "y" * 100, "y" * 50]
    assert split_text("short", 4096) == ["short"]


def test_split_text_counts_utf16_units_and_keeps_emoji_whole() -> None:
    emoji = "\U0001F600" * 5  # 2 UTF-16 units each
    pieces = split_text(emoji, 4)
    assert pieces == ["\U0001F600" * 2, "\U0001F600" * 2, "\U0001F600"]


def test_telegram_posts_plain_text_to_bot_api() -> None:
    with Recorder() as server:
        sender = Sender(TelegramNotifier(TOKEN, "42", server.url, min_interval=0), [TOKEN])
        sender.submit(Message("start", "hello *not markdown* <b>x</b>"))
        assert sender.close(5.0)
    assert len(server.posts) == 1
    post = server.posts[0]
    assert post.path == f"/bot{TOKEN}/sendMessage"
    assert post.body["chat_id"] == "42"
    assert post.body["text"] == "hello *not markdown* <b>x</b>"
    assert "parse_mode" not in post.body
    assert sender.sent == 1 and sender.failed == 0


def test_long_message_is_split_under_4096() -> None:
    text = "\n".join("round summary line " + str(i) * 30 for i in range(400))
    assert len(text) > 3 * 4096
    with Recorder() as server:
        sender = Sender(TelegramNotifier(TOKEN, 1, server.url, min_interval=0))
        sender.submit(Message("end", text))
        assert sender.close(10.0)
    got = server.texts()
    assert len(got) >= 4
    assert all(len(t) <= 4096 for t in got)
    assert "\n".join(got) == text


def test_rate_limit_spaces_messages() -> None:
    with Recorder() as server:
        sender = Sender(TelegramNotifier(TOKEN, 1, server.url, min_interval=0.3))
        for i in range(3):
            sender.submit(Message("round", f"m{i}"))
        assert sender.close(5.0)
    times = [p.time for p in server.posts]
    assert server.texts() == ["m0", "m1", "m2"]
    assert all(b - a >= 0.29 for a, b in zip(times, times[1:], strict=False))


def test_429_honours_retry_after_then_delivers() -> None:
    limited = (429, {"ok": False, "error_code": 429, "description": "Too Many Requests",
                     "parameters": {"retry_after": 1}})
    with Recorder() as server:
        server.script = [limited]
        sender = Sender(TelegramNotifier(TOKEN, 1, server.url, min_interval=0))
        sender.submit(Message("round", "after the wait"))
        assert sender.close(5.0)
    assert server.texts() == ["after the wait", "after the wait"]
    assert server.posts[1].time - server.posts[0].time >= 0.95
    assert sender.sent == 1 and sender.failed == 0


def test_server_error_logged_once_and_later_messages_still_tried(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with Recorder(default=(500, {"ok": False, "description": "boom"})) as server:
        sender = Sender(TelegramNotifier(TOKEN, 1, server.url, min_interval=0), [TOKEN])
        for i in range(3):
            sender.submit(Message("round", f"m{i}"))
        assert sender.close(5.0)
    assert server.texts() == ["m0", "m1", "m2"]  # every message was still tried
    assert sender.failed == 3 and sender.sent == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "HTTP 500" in warnings[0].getMessage()
    assert TOKEN not in caplog.text


def test_unreachable_service_never_raises_and_masks_token(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 logs request paths at debug level
    url = f"http://127.0.0.1:{closed_port()}"
    sender = Sender(TelegramNotifier(TOKEN, 1, url, min_interval=0, timeout=2), [TOKEN])
    sender.submit(Message("start", "nobody listens"))
    sender.submit(Message("end", "still nobody"))
    assert sender.close(10.0)
    assert sender.failed == 2
    assert "ConnectionError" in caplog.text
    assert TOKEN not in caplog.text


def test_close_is_bounded_when_the_service_hangs() -> None:
    limited = (429, {"ok": False, "parameters": {"retry_after": 30}})
    with Recorder(default=limited) as server:
        sender = Sender(TelegramNotifier(TOKEN, 1, server.url, min_interval=0))
        sender.submit(Message("round", "x"))
        t0 = time.monotonic()
        assert not sender.close(0.5)
        assert time.monotonic() - t0 < 2.0


def test_webhook_posts_json_with_event_and_data() -> None:
    with Recorder() as server:
        sender = Sender(WebhookNotifier(server.url + "/hook/KEY"))
        sender.submit(Message("round", "r 3", {"round": 3, "accuracy": 0.5}))
        assert sender.close(5.0)
    post = server.posts[0]
    assert post.path == "/hook/KEY"
    assert post.body == {"event": "round", "text": "r 3", "round": 3, "accuracy": 0.5}


def test_retry_after_header_for_webhooks() -> None:
    with Recorder() as server:
        server.script = [(429, {})]
        notifier = WebhookNotifier(server.url)
        with pytest.raises(RetryAfter) as e:
            notifier.send(Message("x", "y"))
    assert e.value.seconds == 1.0  # no header, no body: the default


def test_http_proxy_with_user_and_password_is_used() -> None:
    """requests sends the absolute URL and Proxy-Authorization to an http proxy; the
    recorder, standing in for the proxy, sees both."""
    with Recorder() as proxy:
        notifier = TelegramNotifier(TOKEN, 7, "http://api.telegram.invalid",
                                    proxy=f"http://alice:p%40ss@127.0.0.1:{proxy.url.split(':')[-1]}",
                                    min_interval=0)
        notifier.send(Message("start", "via proxy"))
    post = proxy.posts[0]
    assert post.path == f"http://api.telegram.invalid/bot{TOKEN}/sendMessage"
    auth = post.headers["Proxy-Authorization"].split()[1]
    assert base64.b64decode(auth).decode() == "alice:p@ss"
    assert post.body["text"] == "via proxy"


@pytest.mark.parametrize("kind", ["telegram", "webhook"])
def test_configured_proxy_wins_over_the_environments(kind, monkeypatch) -> None:
    """With HTTP(S)_PROXY set, a configured proxy still carries every request (and the
    environment's sees none); without one configured, the environment's is used."""
    with Recorder() as env_proxy, Recorder() as configured:
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(var, env_proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)

        def notifier(proxy: str):
            if kind == "telegram":
                return TelegramNotifier(TOKEN, 7, "http://api.telegram.invalid", proxy=proxy,
                                        min_interval=0)
            return WebhookNotifier("http://hooks.invalid/h/SECRETKEY1", proxy=proxy)

        via = notifier(configured.url)
        via.send(Message("start", "configured"))
        via.close()
        assert [p.body["text"] for p in configured.posts] == ["configured"]
        assert env_proxy.posts == []
        plain = notifier("")
        plain.send(Message("start", "environment"))
        plain.close()
        assert [p.body["text"] for p in env_proxy.posts] == ["environment"]
        assert len(configured.posts) == 1


def test_refused_proxy_fails_softly() -> None:
    proxy = f"http://127.0.0.1:{closed_port()}"
    sender = Sender(TelegramNotifier(TOKEN, 1, "http://api.telegram.invalid", proxy=proxy,
                                     min_interval=0, timeout=2))
    sender.submit(Message("start", "x"))
    assert sender.close(10.0)
    assert sender.failed == 1


def test_socks_proxy_without_pysocks_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(None, ["notify.telegram.chat_id=1",
                             "notify.telegram.proxy=socks5h://u:pw@127.0.0.1:1080"],
                      environ={"FEDCLUSTER_TELEGRAM_TOKEN": TOKEN})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "socks" else real(name, *a))
    with pytest.raises(ConfigError, match=r'pip install "requests\[socks\]"') as e:
        notifiers_from_config(cfg.notify)
    assert "pw" not in str(e.value) and TOKEN not in str(e.value)


@pytest.mark.skipif(importlib.util.find_spec("socks") is None, reason="PySocks not installed")
def test_socks_proxy_session_is_built_when_pysocks_present() -> None:
    cfg = load_config(None, ["notify.telegram.chat_id=1",
                             "notify.telegram.proxy=socks5://127.0.0.1:1080"],
                      environ={"FEDCLUSTER_TELEGRAM_TOKEN": TOKEN})
    [(notifier, every)] = notifiers_from_config(cfg.notify)
    assert every == 1
    assert notifier._session.proxies["https"] == "socks5://127.0.0.1:1080"


@pytest.mark.skipif(importlib.util.find_spec("socks") is None, reason="PySocks not installed")
@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_socks_proxy_with_user_and_password_carries_the_message(scheme: str) -> None:
    from http_recorder import Socks5Proxy

    with Recorder() as server, Socks5Proxy("carol", "s3cr:t") as proxy:
        port = server.url.rsplit(":", 1)[1]
        host = "127.0.0.1" if scheme == "socks5" else "bot-api.invalid"  # socks5h: remote DNS
        notifier = TelegramNotifier(TOKEN, 9, f"http://{host}:{port}",
                                    proxy=f"{scheme}://carol:s3cr%3At@127.0.0.1:{proxy.port}",
                                    min_interval=0, timeout=5)
        sender = Sender(notifier)
        sender.submit(Message("start", f"through {scheme}"))
        assert sender.close(10.0)
    assert server.texts() == [f"through {scheme}"]
    assert proxy.seen[0]["user"] == "carol" and proxy.seen[0]["password"] == "s3cr:t"
    expected = ("127.0.0.1", "ip") if scheme == "socks5" else ("bot-api.invalid", "domain")
    assert (proxy.seen[0]["host"], proxy.seen[0]["kind"]) == expected
