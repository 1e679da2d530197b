"""A fault-injecting HTTP proxy for tests: 127.0.0.1, http.server in a thread, in front of a
real registry. Requests pass through unless a rule claims them:

    proxy = FaultProxy(registry.address).start()
    proxy.add("/blobs/", status=503, times=1)                    # one 503, then through
    proxy.add("/manifests/", status=429, headers={"Retry-After": "1"})
    proxy.add("/blobs/sha256:…", reset_after=100_000)            # half a body, then RST
    proxy.log   # [(method, path, Range header or None, what was done)]
"""
from __future__ import annotations

import http.client
import http.server
import socket
import struct
import threading
import time

from tests.support.httpd import LocalHTTPServer

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade",
        "date", "server"}


class Rule:
    def __init__(self, match: str, times: int, status: int | None, headers: dict,
                 reset_after: int | None, method: str | None):
        self.match, self.times, self.status, self.headers = match, times, status, headers
        self.reset_after, self.method = reset_after, method


class FaultProxy(LocalHTTPServer):
    def __init__(self, upstream: str):
        self.upstream = upstream
        self.rules: list[Rule] = []
        self.log: list[tuple[str, str, str | None, str]] = []
        self._lock = threading.Lock()
        super().__init__()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, match: str, *, times: int = 1, status: int | None = None,
            headers: dict | None = None, reset_after: int | None = None,
            method: str | None = "GET") -> None:
        """The next `times` requests whose path contains `match` get the fault
        (times=-1: all of them)."""
        with self._lock:
            self.rules.append(Rule(match, times, status, headers or {}, reset_after, method))

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.log.clear()

    def _claim(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.times != 0 and rule.match in path and rule.method in (None, method):
                    rule.times -= 1
                    return rule
        return None

    def handler(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                rule = proxy._claim(self.command, self.path)
                rng = self.headers.get("Range")
                if rule and rule.status:
                    proxy.log.append((self.command, self.path, rng, f"status {rule.status}"))
                    data = b'{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}'
                    self.send_response(rule.status)
                    for k, v in rule.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                status, headers, data = self._forward(body)
                if rule and rule.reset_after is not None:
                    proxy.log.append((self.command, self.path, rng, f"reset after {rule.reset_after}"))
                    self._send(status, headers, data[:rule.reset_after])
                    self.wfile.flush()
                    time.sleep(0.2)  # let the client read what was sent before the RST drops it
                    # SO_LINGER 0: close() sends RST, as a dropped link or a dying peer does.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                proxy.log.append((self.command, self.path, rng, f"forwarded {status}"))
                self._send(status, headers, data)

            def _forward(self, body):
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    return resp.status, resp.getheaders(), resp.read()
                finally:
                    conn.close()

            def _send(self, status, headers, data):
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                # The full length even when the body is cut: the client must notice the cut.
                full = next((v for k, v in headers if k.lower() == "content-length"), None)
                self.send_header("Content-Length", full if full is not None else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, *args):
                pass

        return Handler
