"""What both HTTP clients share: the Response shape, how a failure is judged (final, or
one a retry may heal), URL helpers, and the requests transport for HTTPS off this host.

No imagetool module is imported at module level here, so plainhttp.py and registry.py
both build on this one without importing each other.
"""
from __future__ import annotations


class BodyError(OSError):
    """The response broke HTTP framing (bad status line, chunk size, …): final, since a
    server speaking something else will not heal; a body cut short may (heal=True)."""

    def __init__(self, message: str, heal: bool = False):
        super().__init__(message)
        self.heal = heal


class Final(Exception):
    """Internal: a transport failure no retry will fix (refused, unknown host)."""


class Heal(Exception):
    """Internal: this attempt failed in a way a retry may fix."""

    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


# -- transports ---------------------------------------------------------------

class RequestsTransport:
    """requests, for HTTPS to registries off this host (proxies from the environment).
    TLS as tls.TLSConfig says: one SSLContext per host, mounted on its own adapter."""

    def __init__(self, timeout: float = 30.0, pool: int = 8, tls=None):
        import requests  # deliberately here: ~120 ms of imports only HTTPS pulls pay
        self.requests = requests
        self.session = requests.Session()
        self.pool = pool
        adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.timeout = timeout
        self.tls = tls
        self._mounted: set[str] = set()
        if tls is not None and not tls.verify:
            import urllib3
            self.session.verify = False
            # The user asked for it (--tls-verify=false): no warning per request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    def _mount_tls(self, url: str) -> None:
        """The host's own SSLContext (its certs.d CAs and client certificate)."""
        netloc = split_url(url)[1].rpartition("@")[2]
        if self.tls is None or netloc in self._mounted:
            return
        context = self.tls.context(netloc)

        class _Adapter(self.requests.adapters.HTTPAdapter):
            def init_poolmanager(self, *args, **kwargs):
                kwargs["ssl_context"] = context
                return super().init_poolmanager(*args, **kwargs)
        adapter = _Adapter(pool_connections=self.pool, pool_maxsize=self.pool, max_retries=0)
        self.session.mount(f"https://{netloc}/", adapter)
        self._mounted.add(netloc)

    def request(self, method: str, url: str, headers: dict, body=None) -> "Response":
        if url.startswith("https://"):
            self._mount_tls(url)
        try:
            resp = self.session.request(method, url, headers=headers, data=body, stream=True,
                                        allow_redirects=False, timeout=(10, self.timeout))
        except self.requests.RequestException as e:
            raise net_error(e, url, self.tls) from None

        def read(n: int = -1) -> bytes:
            try:
                return resp.raw.read(None if n < 0 else n, decode_content=True)
            except Exception as e:  # urllib3 wraps socket errors in its own types
                raise net_error(e) from None

        def read_some(n: int) -> bytes:
            try:
                return resp.raw.read1(n, decode_content=True)
            except Exception as e:
                raise net_error(e) from None
        return Response(resp.status_code, resp.headers, read, resp.close, read_some)


class Response:
    """status; headers with case-insensitive .get(); read(n) -> up to n bytes, short only at
    the end; read_some(n) -> what one receive gives (1..n bytes, b"" at the end), so bytes
    already received are kept when the stream breaks; release() gives the connection back
    (or drops it). Plain classes here: dataclasses costs ~10 ms to import."""
    __slots__ = ("status", "headers", "read", "release", "read_some")

    def __init__(self, status: int, headers, read, release, read_some=None):
        self.status, self.headers, self.read, self.release = status, headers, read, release
        self.read_some = read_some or read


def net_error(e: BaseException, url: str | None = None, tls=None) -> Exception:
    """Map a transport exception to heal-able or final, by its root cause. `url` (and
    `tls`, its TLSConfig) let a TLS failure inside requests be worded as skopeo does."""
    import sys
    from _socket import gaierror
    from .tls import TLSFailure
    ssl = sys.modules.get("ssl")  # imported by whoever made a TLS connection, if anyone did
    seen, todo = set(), [e]
    while todo:
        x = todo.pop()
        if not isinstance(x, BaseException) or id(x) in seen:
            continue  # urllib3 keeps a str in some .reason attributes
        seen.add(id(x))
        if isinstance(x, ConnectionRefusedError):
            return Final("connection refused")
        if isinstance(x, gaierror):
            return Final(f"cannot resolve host: {x.strerror or x}")
        if isinstance(x, TLSFailure):
            return Final(str(x))
        if ssl is not None and isinstance(x, ssl.SSLError) and url:
            from .tls import TLSConfig, describe
            host, port = split_host(split_url(url)[1], 443)
            return Final(describe(x, host, port, tls or TLSConfig()))
        if getattr(x, "heal", None) is False:  # BodyError: not HTTP as we know it
            return Final(f"malformed response: {x}")
        todo += [getattr(x, "reason", None), x.__cause__, x.__context__,
                 *[a for a in getattr(x, "args", ()) if isinstance(a, BaseException)]]
    return Heal(f"network error: {e}")


def connect(host: str, port: int, timeout: float):
    """A TCP connection to host:port (a name or an address, "[…]" for IPv6), as
    socket.create_connection makes it, from the _socket module alone: `socket` (with the
    enum and selectors it imports) is ~4 ms of a ~35 ms pull from a local registry. The
    host goes in as bytes, so no idna codec is loaded either."""
    import _socket
    name = host[1:-1] if host.startswith("[") else host
    error: OSError | None = None
    for family, kind, proto, _, address in _socket.getaddrinfo(name.encode(), port, 0,
                                                                 _socket.SOCK_STREAM):
        sock = _socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock
        except OSError as e:
            sock.close()
            error = e
    raise error if error is not None else OSError(f"{host}: no address to connect to")


def split_url(url: str) -> tuple[str, str, str]:
    """'http://h:p/a?b' → ('http', 'h:p', '/a?b'): all a registry URL needs (no urllib.parse)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise BodyError(f"{url}: not an absolute URL")
    netloc, slash, path = rest.partition("/")
    path = slash + path
    if "?" in netloc:  # 'http://h?x'
        netloc, _, query = netloc.partition("?")
        path = "/?" + query
    return scheme.lower(), netloc, path.split("#", 1)[0] or "/"


def split_host(netloc: str, default_port: int = 80) -> tuple[str, int]:
    netloc = netloc.rpartition("@")[2]
    if netloc.startswith("["):
        host, _, rest = netloc.partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        host += "]"
    else:
        host, _, port = netloc.partition(":")
    if port and not port.isdigit():
        raise BodyError(f"{netloc}: malformed port")
    return host, int(port) if port else default_port


def join_url(base: str, location: str) -> str:
    """Where a redirect's Location points, relative to `base` (absolute, /path, or relative)."""
    if "://" in location.split("?", 1)[0]:
        return location
    scheme, netloc, path = split_url(base)
    if location.startswith("//"):
        return f"{scheme}:{location}"
    if location.startswith("/"):
        return f"{scheme}://{netloc}{location}"
    directory = path.split("?", 1)[0].rpartition("/")[0]
    return f"{scheme}://{netloc}{directory}/{location}"
