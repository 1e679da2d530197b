"""A minimal HTTP/1.1 client over a socket, for registries on loopback (plain HTTP or
HTTPS) or reached with --plain-http.

Why not http.client: its import (email.parser, ssl, datetime, …) costs ~25 ms here, a
quarter of a whole pull of a 1 MB image from a loopback registry. A registry client
needs little of HTTP: GET/HEAD/PUT/POST/PATCH, a handful of headers, keep-alive,
Content-Length or chunked bodies, redirects (followed by the caller) and Range. TLS is
the ssl module's, set up by tls.TLSConfig, imported only when a connection needs it.
An https:// URL to another host (a registry redirecting blobs to TLS storage, which may
sit behind the environment's proxy) is handed to requests.

Errors are OSError (refused, reset, timeout) or `BodyError` (the peer broke the framing);
a body that ends early is a short read_some() (b""), which the caller treats as a
stream that can resume.
"""
from __future__ import annotations

import _socket
import io
import threading

from .transport import BodyError, connect, join_url, split_host, split_url  # noqa: F401 - this module's API too

_MAX_HEADER_LINE = 65536
_MAX_HEADERS = 200


class Headers(dict):
    """Header names lowercased; .get() takes any case, as requests' headers do."""

    def get(self, name: str, default=None):
        return dict.get(self, name.lower(), default)

    def __getitem__(self, name: str):
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name) -> bool:
        return dict.__contains__(self, name.lower())


class _Conn:
    def __init__(self, host: str, port: int, timeout: float, tls=None):
        raw = connect(host, port, timeout)
        raw.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        if tls is None:
            self.sock = raw
            self.file = io.BufferedReader(_SocketReader(raw), 1 << 16)
        else:
            import socket  # ssl wraps socket.socket objects (and imports socket itself)
            sock = socket.socket(fileno=raw.detach())
            sock.settimeout(timeout)
            self.sock = tls.wrap(sock, host, port)
            self.file = self.sock.makefile("rb", buffering=1 << 16)
        self.used = False

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            self.sock.close()


class _SocketReader(io.RawIOBase):
    """A _socket.socket as the raw stream under an io.BufferedReader: what
    socket.makefile("rb") gives, without the socket module."""

    def __init__(self, sock) -> None:
        self.sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self.sock.recv_into(buffer)


class _Body:
    """Reads one response body off a connection: Content-Length, chunked, or until close."""

    def __init__(self, conn: _Conn, length: int | None, chunked: bool):
        self.conn, self.f = conn, conn.file
        self.left = length          # bytes left (Content-Length), None: until close
        self.chunked = chunked
        self.chunk_left = 0         # bytes left in the current chunk
        self.done = length == 0

    def read_some(self, n: int) -> bytes:
        if self.done or n == 0:
            return b""
        if self.chunked:
            if self.chunk_left == 0:
                self.chunk_left = self._next_chunk_size()
                if self.chunk_left == 0:
                    self._trailers()
                    self.done = True
                    return b""
            data = self.f.read1(min(n, self.chunk_left))
            if not data:
                raise BodyError("connection closed inside a chunk", heal=True)
            self.chunk_left -= len(data)
            if self.chunk_left == 0 and self.f.readline(_MAX_HEADER_LINE) not in (b"\r\n", b"\n"):
                raise BodyError("malformed chunk terminator")
            return data
        want = n if self.left is None else min(n, self.left)
        data = self.f.read1(want)
        if not data:
            self.done = True
            if self.left:
                self.left = -self.left  # short: the connection cannot be reused
            return b""
        if self.left is not None:
            self.left -= len(data)
            self.done = self.left == 0
        return data

    def read(self, n: int = -1) -> bytes:
        """Up to n bytes (all if n < 0), short only at the end of the body."""
        parts, got = [], 0
        while n < 0 or got < n:
            data = self.read_some(1 << 16 if n < 0 else min(1 << 16, n - got))
            if not data:
                if self.left is not None and self.left < 0:
                    raise BodyError(f"connection closed {-self.left} bytes before the body's end",
                                    heal=True)
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def _next_chunk_size(self) -> int:
        line = self.f.readline(_MAX_HEADER_LINE)
        size = line.split(b";", 1)[0].strip()
        try:
            return int(size, 16)
        except ValueError:
            raise BodyError(f"malformed chunk size {line[:40]!r}") from None

    def _trailers(self) -> None:
        while self.f.readline(_MAX_HEADER_LINE) not in (b"\r\n", b"\n", b""):
            pass

    @property
    def reusable(self) -> bool:
        if not self.done:
            return False
        return self.chunked or self.left == 0  # an until-close body used the connection up


class PlainHTTPTransport:
    """One keep-alive connection per thread, scheme and host. https URLs to loopback
    hosts are TLS over our socket (with `tls`, a tls.TLSConfig); to other hosts,
    requests."""

    def __init__(self, timeout: float = 30.0, tls=None):
        self.timeout = timeout
        self.tls = tls
        self._local = threading.local()
        self._requests = None

    def request(self, method: str, url: str, headers: dict, body=None):
        """`body`: bytes, or a file object read to its end from where it stands (the
        caller sets Content-Length)."""
        from .transport import net_error
        try:
            return self._request(method, url, headers, body)
        except OSError as e:
            raise net_error(e, url, self.tls) from None

    def _request(self, method: str, url: str, headers: dict, body):
        from .reference import is_local_host
        from .transport import Response
        scheme, netloc, path = split_url(url)
        if scheme == "https" and not is_local_host(netloc):
            if self._requests is None:
                from .transport import RequestsTransport
                self._requests = RequestsTransport(self.timeout, tls=self.tls)
            return self._requests.request(method, url, headers, body)
        if scheme not in ("http", "https"):
            raise BodyError(f"{url}: unsupported URL scheme")
        tls = None
        if scheme == "https":
            from .tls import TLSConfig
            tls = self.tls if self.tls is not None else TLSConfig()
        conns = self._local.__dict__.setdefault("conns", {})
        lines = [f"{method} {path} HTTP/1.1", f"Host: {netloc}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        wire = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if isinstance(body, (bytes, bytearray, memoryview)):
            wire += bytes(body)
            body = None
        start = body.tell() if body is not None else 0
        key = (scheme, netloc)
        for _ in (0, 1):
            conn = conns.pop(key, None)
            reused = conn is not None
            if conn is None:
                host, port = split_host(netloc, 443 if tls else 80)
                conn = _Conn(host, port, self.timeout, tls)
            try:
                conn.sock.sendall(wire)
                if body is not None:
                    body.seek(start)
                    while chunk := body.read(1 << 20):
                        conn.sock.sendall(chunk)
                status, resp_headers = _read_head(conn.file)
            except (OSError, EOFError) as e:
                conn.close()
                if reused:  # the server closed an idle keep-alive connection: once more, fresh
                    continue
                raise e if isinstance(e, OSError) else BodyError(str(e)) from None
            conn.used = True
            resp_body = _body_for(conn, method, status, resp_headers)

            def release(conn=conn, resp_body=resp_body, headers=resp_headers) -> None:
                keep = resp_body.reusable and "close" not in (headers.get("connection") or "").lower()
                if keep and conns.get(key) is None:
                    conns[key] = conn
                else:
                    conn.close()
            return Response(status, resp_headers, resp_body.read, release, resp_body.read_some)
        raise AssertionError("unreachable")


def _read_head(f) -> tuple[int, Headers]:
    while True:
        line = f.readline(_MAX_HEADER_LINE)
        if not line:
            raise EOFError("connection closed before the response")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise BodyError(f"malformed status line {line[:60]!r}")
        status = int(parts[1])
        headers = Headers()
        for _ in range(_MAX_HEADERS):
            h = f.readline(_MAX_HEADER_LINE)
            if h in (b"\r\n", b"\n", b""):
                break
            name, sep, value = h.decode("latin-1").partition(":")
            if not sep:
                raise BodyError(f"malformed header line {h[:60]!r}")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        else:
            raise BodyError("too many response headers")
        if 100 <= status < 200:  # 100 Continue and friends: the real answer follows
            continue
        return status, headers


def _body_for(conn: _Conn, method: str, status: int, headers: Headers) -> _Body:
    if method == "HEAD" or status in (204, 304):
        return _Body(conn, 0, False)
    if "chunked" in (headers.get("transfer-encoding") or "").lower():
        return _Body(conn, None, True)
    length = headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise BodyError(f"malformed Content-Length {length!r}")
        return _Body(conn, int(length), False)
    return _Body(conn, None, False)  # until the server closes
