"""A threaded HTTP server on a free port of 127.0.0.1, for the tests' fake registries,
token services and fault proxies. Subclasses say what serves (handler())."""
from __future__ import annotations

import http.server
import threading


class LocalHTTPServer:
    def __init__(self):
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self):
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
