"""A real local HTTP server for the notification tests: it records every POST and
answers with scripted responses (status, JSON body), then a default one."""

from __future__ import annotations

import contextlib
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


class Socks5Proxy:
    """A minimal SOCKS5 proxy (RFC 1928 CONNECT, RFC 1929 user/password) that records
    who connected where, resolving every domain name to 127.0.0.1 (so a ``socks5h://``
    request for an invented host name reaches the local recorder)."""

    def __init__(self, user: str = "", password: str = "") -> None:
        import socketserver

        self.user, self.password = user, password
        self.seen: list[dict[str, Any]] = []
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def _serve(self, conn: Any) -> None:
        import socket
        import struct

        def read(n: int) -> bytes:
            data = b""
            while len(data) < n:
                chunk = conn.recv(n - len(data))
                if not chunk:
                    raise ConnectionError("client went away")
                data += chunk
            return data

        _, n = read(2)
        methods = read(n)
        auth = {}
        if self.user:
            if 2 not in methods:
                conn.sendall(b"\x05\xff")
                return
            conn.sendall(b"\x05\x02")
            _, ulen = read(2)
            user = read(ulen).decode()
            (plen,) = read(1)
            password = read(plen).decode()
            ok = (user, password) == (self.user, self.password)
            conn.sendall(b"\x01" + (b"\x00" if ok else b"\x01"))
            auth = {"user": user, "password": password}
            if not ok:
                return
        else:
            conn.sendall(b"\x05\x00")
        _, cmd, _, atyp = read(4)
        if atyp == 1:
            host, kind = socket.inet_ntoa(read(4)), "ip"
        elif atyp == 3:
            (length,) = read(1)
            host, kind = read(length).decode(), "domain"
        else:
            host, kind = socket.inet_ntop(socket.AF_INET6, read(16)), "ip6"
        (port,) = struct.unpack("!H", read(2))
        self.seen.append({"host": host, "kind": kind, "port": port, **auth})
        upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("0.0.0.0") + b"\x00\x00")

        def pipe(src: Any, dst: Any) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    dst.sendall(data)
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

        back = threading.Thread(target=pipe, args=(upstream, conn), daemon=True)
        back.start()
        pipe(conn, upstream)
        back.join(5)
        upstream.close()

    def __enter__(self) -> Socks5Proxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
