"""TLS to registries the way the containers tools do it, and its failures in their words.

Trust: the system's CAs, plus per registry the files of containers-certs.d(5): in
/etc/containers/certs.d/HOST:PORT/ (and Docker's /etc/docker/certs.d/HOST:PORT/),
`*.crt` are CAs, `*.cert` with the `*.key` of the same name a client certificate.
`--cert-dir DIR` takes the place of those directories (as skopeo's does), and
`--tls-verify=false` checks nothing. IMAGETOOL_CERTS_D (directories, `:`-separated)
replaces the two system directories, for tests and unusual installs.

Failures are one line each, worded as skopeo (Go's crypto/x509 and net/http) words them:
`x509: certificate signed by unknown authority`, `x509: certificate is valid for …,
not …`, `http: server gave HTTP response to HTTPS client`.

`probe()` tells a TLS server from a plain-HTTP one without the ssl module (its import
and a context with the system CAs cost ~30 ms, more than half of a small local pull):
it sends a ClientHello by hand and looks at the first bytes of the answer.
"""
from __future__ import annotations

import os

CERTS_DIRS = ("/etc/containers/certs.d", "/etc/docker/certs.d")
CERTS_ENV = "IMAGETOOL_CERTS_D"
PROBE_TIMEOUT = 5.0  # seconds a server has to answer a ClientHello

# OpenSSL's X509_V_ERR_* codes, as Go words them.
_UNKNOWN_AUTHORITY = {2, 18, 19, 20, 21, 27}  # no issuer, self-signed, untrusted
_NOT_YET_VALID, _EXPIRED, _HOSTNAME_MISMATCH, _IP_MISMATCH = 9, 10, 62, 64


class TLSError(Exception):
    """A TLS set-up problem (certificate files) or a failed handshake: one line."""


class TLSFailure(OSError):
    """A handshake that failed for a reason no retry heals; str() is the line to show."""

    heal = False


class TLSConfig:
    """verify: check the server's certificate; cert_dir: the only directory of CA and
    client files (None: certs.d/HOST:PORT/ under each of the certs.d directories)."""

    def __init__(self, verify: bool = True, cert_dir: str | None = None):
        self.verify = verify
        self.cert_dir = cert_dir
        if cert_dir is not None and not os.path.isdir(cert_dir):
            raise TLSError(f"--cert-dir {cert_dir}: no such directory")
        self._contexts: dict = {}

    def directories(self, host: str) -> list[str]:
        if self.cert_dir is not None:
            return [self.cert_dir]
        roots = os.environ.get(CERTS_ENV)
        roots = roots.split(":") if roots is not None else CERTS_DIRS
        return [os.path.join(r, host) for r in roots if r and os.path.isdir(os.path.join(r, host))]

    def files(self, host: str) -> tuple[list[str], list[tuple[str, str]]]:
        """(CA files, (client cert, key) pairs) for `host`, in containers-certs.d's naming."""
        cas, pairs = [], []
        for d in self.directories(host):
            try:
                names = sorted(os.listdir(d))
            except OSError as e:
                raise TLSError(f"{d}: {e.strerror}") from None
            for name in names:
                path = os.path.join(d, name)
                if name.endswith(".crt"):
                    cas.append(path)
                elif name.endswith(".cert"):
                    key = path[:-5] + ".key"
                    if not os.path.exists(key):
                        raise TLSError(f"{path}: client certificate without its key {name[:-5]}.key")
                    pairs.append((path, key))
                elif name.endswith(".key") and not os.path.exists(path[:-4] + ".cert"):
                    raise TLSError(f"{path}: client key without its certificate {name[:-4]}.cert")
        return cas, pairs

    def context(self, host: str):
        """The ssl.SSLContext for `host` (made once per host)."""
        ctx = self._contexts.get(host)
        if ctx is None:
            ctx = self._contexts[host] = self._make_context(host, check_hostname=True)
        return ctx

    def _make_context(self, host: str, check_hostname: bool):
        import ssl
        cas, pairs = self.files(host)
        if self.verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = check_hostname
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        for ca in cas:
            try:
                ctx.load_verify_locations(cafile=ca)
            except (ssl.SSLError, OSError) as e:
                raise TLSError(f"{ca}: not a CA certificate ({_reason(e)})") from None
        for cert, key in pairs:
            try:
                ctx.load_cert_chain(cert, key)
            except (ssl.SSLError, OSError) as e:
                raise TLSError(f"{cert}: cannot load the client certificate and key ({_reason(e)})") from None
        return ctx

    def wrap(self, sock, host: str, port: int):
        """TLS over the connected `sock` to host:port (the registry host as the user
        named it), or TLSFailure with skopeo's words for why not."""
        import ssl
        name = host[1:-1] if host.startswith("[") else host
        try:
            return self.context(_netloc(host, port)).wrap_socket(sock, server_hostname=name)
        except ssl.SSLError as e:
            sock.close()
            raise TLSFailure(describe(e, host, port, self)) from None


def _netloc(host: str, port: int) -> str:
    return host if port == 443 else f"{host}:{port}"


def _reason(e: BaseException) -> str:
    return getattr(e, "verify_message", None) or getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e)


def describe(e, host: str, port: int, config: "TLSConfig") -> str:
    """skopeo's line for the ssl error `e` met talking to host:port."""
    import ssl
    if isinstance(e, ssl.SSLCertVerificationError):
        code = e.verify_code
        if code in _UNKNOWN_AUTHORITY:
            return "x509: certificate signed by unknown authority"
        if code in (_EXPIRED, _NOT_YET_VALID):
            return "x509: certificate has expired or is not yet valid"
        if code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
            return _name_mismatch(host, port, config)
        return f"x509: {e.verify_message}"
    reason = (getattr(e, "reason", None) or "").upper()
    for alert, words in (("CERTIFICATE_REQUIRED", "certificate required"),
                         ("BAD_CERTIFICATE", "bad certificate"), ("UNKNOWN_CA", "unknown certificate authority")):
        if alert in reason:
            try:
                have_cert = bool(config.files(_netloc(host, port))[1])
            except TLSError:
                have_cert = False
            why = ("the registry refused our client certificate" if have_cert else
                   "the registry wants a client certificate: a *.cert and its *.key in "
                   "--cert-dir or certs.d/HOST:PORT/")
            return f"remote error: tls: {words} ({why})"
    import socket
    try:
        kind, first = probe(socket.create_connection((host.strip("[]"), port), timeout=PROBE_TIMEOUT))
    except OSError:
        kind, first = None, b""
    if kind == "http":  # Go's two words for it, by what the first record holds
        if first.startswith(b"HTTP/"):
            return "http: server gave HTTP response to HTTPS client"
        return "tls: first record does not look like a TLS handshake"
    return f"TLS handshake failed: {_reason(e)}"


def _name_mismatch(host: str, port: int, config: "TLSConfig") -> str:
    """Go's wording needs the names the certificate holds: fetched again, chain still
    verified, only the name check left out (the message is all this is for)."""
    import socket
    name = host[1:-1] if host.startswith("[") else host
    try:
        ctx = config._make_context(_netloc(host, port), check_hostname=False)
        with socket.create_connection((name, port), timeout=PROBE_TIMEOUT) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as s:
                sans = s.getpeercert().get("subjectAltName", ())
    except (OSError, TLSError):
        return f"x509: certificate is not valid for {name}"
    is_ip = _is_ip(name)
    valid = [v for k, v in sans if k == ("IP Address" if is_ip else "DNS")]
    if is_ip and not valid:
        return f"x509: cannot validate certificate for {name} because it doesn't contain any IP SANs"
    if not sans:
        return "x509: certificate relies on legacy Common Name field, use SANs instead"
    return f"x509: certificate is valid for {', '.join(valid or [v for _, v in sans])}, not {name}"


def _is_ip(name: str) -> bool:
    if ":" in name:
        return True
    parts = name.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


# -- telling TLS from plain HTTP, without the ssl module --------------------------------

def _u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


def _client_hello() -> bytes:
    """A TLS 1.2 ClientHello any TLS server answers (a ServerHello, or an alert when
    nothing matches): common suites, curves and signature schemes. Its extension
    0x000a also holds a newline, so a plain-HTTP server reading a request line
    answers at once (with a 400) instead of waiting for more."""
    suites = b"".join(_u16(s) for s in (0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8,
                                        0x009C, 0x009D, 0x002F, 0x0035))
    groups = b"".join(_u16(g) for g in (0x001D, 0x0017, 0x0018))
    sigalgs = b"".join(_u16(a) for a in (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501,
                                         0x0806, 0x0601))

    def ext(kind: int, data: bytes) -> bytes:
        return _u16(kind) + _u16(len(data)) + data
    extensions = (ext(0x000A, _u16(len(groups)) + groups)
                  + ext(0x000B, b"\x01\x00")
                  + ext(0x000D, _u16(len(sigalgs)) + sigalgs))
    body = (b"\x03\x03" + os.urandom(32) + b"\x00" + _u16(len(suites)) + suites + b"\x01\x00"
            + _u16(len(extensions)) + extensions)
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + _u16(len(handshake)) + handshake


def probe(s) -> tuple[str, bytes]:
    """What speaks on the connected socket `s` (closed here): ("tls", …) a TLS record came
    back; ("http", …) an HTTP response (a status line, or an HTTP/0.9-style bare body, as
    Python's http.server answers a request line without a version); ("silent", b"") no
    answer before the socket's timeout or the close. The caller connects, so that this
    module needs no transport of its own."""
    try:
        s.sendall(_client_hello())
        first = s.recv(5)
    except (TimeoutError, ConnectionResetError, BrokenPipeError):
        return "silent", b""
    finally:
        s.close()
    if len(first) >= 2 and first[0] in (0x15, 0x16) and first[1] == 0x03:
        return "tls", first
    return ("http", first) if first else ("silent", b"")
