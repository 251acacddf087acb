"""A small reverse proxy for tests: forwards every request to an upstream and appends the caller's
address to X-Forwarded-For, as the documented nginx does (`$proxy_add_x_forwarded_for`). With it a
test sees what the service sees in production: every request arriving from the proxy's address."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class _Handler(BaseHTTPRequestHandler):
    upstream: tuple[str, int]

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        earlier = self.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{earlier}, {self.client_address[0]}" if earlier else self.client_address[0]
        headers["Host"] = f"{self.upstream[0]}:{self.upstream[1]}"
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            payload = answer.read()
        finally:
            conn.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_HEAD = _forward


class ReverseProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        handler = type("Handler", (_Handler,), {"upstream": (upstream_host, upstream_port)})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]

    def __enter__(self) -> Self:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
