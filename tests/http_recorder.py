"""A real local HTTP server for the notification tests: it records every POST and
answers with scripted responses (status, JSON body), then a default one."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    time: float


class Recorder:
    def __init__(self, default: tuple[int, dict[str, Any]] = (200, {"ok": True})) -> None:
        self.posts: list[Post] = []
        self.script: list[tuple[int, dict[str, Any]]] = []
        self.default = default
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                import time

                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with recorder.lock:
                    recorder.posts.append(Post(self.path, dict(self.headers),
                                               json.loads(raw or b"{}"), time.monotonic()))
                    status, body = (recorder.script.pop(0) if recorder.script
                                    else recorder.default)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def texts(self) -> list[str]:
        with self.lock:
            return [p.body.get("text", "") for p in self.posts]

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    """A local port with nothing listening on it."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
