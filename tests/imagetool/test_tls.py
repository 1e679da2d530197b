"""TLS as skopeo does it, against real docker-registry instances serving HTTPS on
127.0.0.1 with certificates of a CA the test makes with openssl (issue 19).

skopeo is the oracle for the wording of each failure."""
from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading

import pytest

import imagetool
from imagetool.registry import Client, RegistryError
from tests.support import images
from tests.support.registry import Registry, RegistryUnavailable

from .certs import CA, Unavailable, cert_dir
from .clitools import assert_one_line_error, run_cli

needs_skopeo = pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo not installed")


class TLS:
    """The CA, and registries: `good` (a certificate for 127.0.0.1 and localhost),
    `dns_only` (for registry.example alone), `mutual` (wants a client certificate)."""

    def __init__(self, base: str):
        self.ca = CA(os.path.join(base, "ca"))
        self.client = self.ca.issue("client", client=True)
        self.registries = []
        self.good = self._start(base, "good", ["IP:127.0.0.1", "DNS:localhost"])
        self.dns_only = self._start(base, "dns-only", ["DNS:registry.example"])
        self.mutual = self._start(base, "mutual", ["IP:127.0.0.1"], client_cas=[self.ca.cert])
        self.image = images.busybox_image(cmd=["echo", "over tls"])
        ctx = ssl.create_default_context(cafile=self.ca.cert)
        ctx.load_cert_chain(*self.client)
        for reg in (self.good, self.mutual):
            images.push(reg.address, "demo/busybox", "latest", self.image, tls_context=ctx)
        self.cert_dir = cert_dir(os.path.join(base, "cert-dir"), self.ca)
        self.client_dir = cert_dir(os.path.join(base, "client-dir"), self.ca, self.client)

    def _start(self, base: str, name: str, sans: list[str], client_cas=None) -> Registry:
        cert = self.ca.issue(name, sans)
        reg = Registry(os.path.join(base, name), tls=cert, client_cas=client_cas).start()
        self.registries.append(reg)
        return reg

    def stop(self):
        for reg in self.registries:
            reg.stop()


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    try:
        t = TLS(str(tmp_path_factory.mktemp("tls")))
    except (Unavailable, RegistryUnavailable) as e:
        pytest.skip(str(e))
    yield t
    t.stop()


def _skopeo(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["skopeo", "inspect", *args], capture_output=True, text=True, timeout=60)


# -- the failures, one line each, in skopeo's words -----------------------------------------

@needs_skopeo
def test_unknown_ca_refused_as_skopeo_says(tls, tmp_path):
    ref = f"{tls.good.address}/demo/busybox:latest"
    p = run_cli("pull", ref, str(tmp_path / "layout"))
    assert_one_line_error(p, ref, "x509: certificate signed by unknown authority")
    assert not (tmp_path / "layout").exists()
    assert "x509: certificate signed by unknown authority" in _skopeo(f"docker://{ref}").stderr


@needs_skopeo
@pytest.mark.parametrize("host,line", [
    ("127.0.0.1", "x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs"),
    ("localhost", "x509: certificate is valid for registry.example, not localhost"),
])
def test_certificate_for_another_name(tls, tmp_path, host, line):
    ref = f"{host}:{tls.dns_only.port}/demo/busybox:latest"
    p = run_cli("pull", "--cert-dir", tls.cert_dir, ref, str(tmp_path / "layout"))
    assert_one_line_error(p, line)
    assert line in _skopeo("--cert-dir", tls.cert_dir, f"docker://{ref}").stderr


class _TCPServer:
    """A TCP server on `host` (any port) whose every connection, in a thread of its own,
    gets answer(conn) and is closed; a peer that hangs up early is no failure."""

    def __init__(self, host: str, answer):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            try:
                self.answer(conn)
            except OSError:
                pass

    def close(self):
        self.sock.close()


def _plain_http(status_line: bool):
    """The answer of a plain-HTTP 'registry'. With status_line, it answers anything with
    an HTTP status line (as Go's server does); without, a request line it cannot parse gets
    a bare body (as Python's http.server answers one without a version)."""
    def answer(conn):
        data = conn.recv(65536)
        if data.startswith(b"GET "):
            body = b'{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}'
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        elif status_line:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
        else:
            conn.sendall(b"<!DOCTYPE HTML><html><body>Bad request</body></html>\n")
    return answer


def _outside_address() -> str:
    """This host's address on a non-loopback interface (none: skip)."""
    for target in ("10.255.255.255", "192.168.255.255", "172.31.255.255"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((target, 9))  # no packet is sent: it only picks a route
                addr = s.getsockname()[0]
            except OSError:
                continue
        if addr and not addr.startswith("127.") and addr != "0.0.0.0":
            return addr
    pytest.skip("no non-loopback IPv4 address on this host")


@needs_skopeo
@pytest.mark.parametrize("status_line,line", [
    (True, "http: server gave HTTP response to HTTPS client"),
    (False, "tls: first record does not look like a TLS handshake"),
])
def test_plain_http_server_spoken_to_with_tls(tmp_path, status_line, line):
    addr = _outside_address()
    server = _TCPServer("0.0.0.0", _plain_http(status_line))  # reached through a non-loopback address
    try:
        ref = f"{addr}:{server.port}/demo/x:latest"
        p = run_cli("pull", ref, str(tmp_path / "layout"))
        assert_one_line_error(p, ref, line)
        assert line in _skopeo(f"docker://{ref}").stderr
        # --tls-verify=false lets it fall back to plain HTTP, as skopeo's does
        p = run_cli("pull", "--tls-verify=false", ref, str(tmp_path / "layout"))
        assert_one_line_error(p, ref, "repository not found")
    finally:
        server.close()


def test_https_forced_on_a_plain_loopback_registry(seeded):
    client = Client(seeded["registry"].address, plain_http=False)
    with pytest.raises(RegistryError, match="http: server gave HTTP response to HTTPS client"):
        client.ping()


def test_client_certificate_required(tls, tmp_path):
    ref = f"{tls.mutual.address}/demo/busybox:latest"
    p = run_cli("pull", "--cert-dir", tls.cert_dir, ref, str(tmp_path / "layout"))
    assert_one_line_error(p, ref, "remote error: tls: bad certificate", "wants a client certificate")
    p = run_cli("pull", "-q", "--cert-dir", tls.client_dir, ref, str(tmp_path / "layout"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == tls.image.manifest.digest


def _neither(conn):
    """An answer that is neither TLS nor HTTP."""
    conn.recv(65536)
    conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")


def test_loopback_server_that_speaks_neither(tmp_path):
    srv = _TCPServer("127.0.0.1", _neither)
    try:
        p = run_cli("pull", f"127.0.0.1:{srv.port}/demo/x:latest", str(tmp_path / "layout"))
    finally:
        srv.close()
    assert_one_line_error(p, "malformed response", "it does not speak TLS either", "SSH-2.0")


# -- what works --------------------------------------------------------------------------------

@needs_skopeo
def test_pull_over_tls_with_cert_dir_same_digest_as_skopeo(tls, tmp_path):
    ref = f"{tls.good.address}/demo/busybox:latest"
    p = run_cli("pull", "-q", "--cert-dir", tls.cert_dir, ref, str(tmp_path / "layout"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == tls.image.manifest.digest
    out = _skopeo("--cert-dir", tls.cert_dir, f"docker://{ref}")
    assert out.returncode == 0, out.stderr
    import json
    assert json.loads(out.stdout)["Digest"] == tls.image.manifest.digest
    p = run_cli("unpack", f"{tmp_path / 'layout'}:latest", str(tmp_path / "bundle"))
    assert p.returncode == 0, p.stderr


def test_certs_d_of_the_registry(tls, tmp_path, monkeypatch):
    """/etc/containers/certs.d/HOST:PORT/, through a test-local stand-in for /etc."""
    certs_d = tmp_path / "certs.d"
    cert_dir(str(certs_d / tls.good.address), tls.ca)
    ref = f"{tls.good.address}/demo/busybox:latest"
    p = run_cli("pull", "-q", ref, str(tmp_path / "layout"),
                env={**os.environ, "IMAGETOOL_CERTS_D": str(certs_d)})
    assert p.returncode == 0, p.stderr
    # the library takes it the same way
    monkeypatch.setenv("IMAGETOOL_CERTS_D", str(certs_d))
    result = imagetool.pull(ref, str(tmp_path / "layout2"), progress=False)
    assert result.descriptor["digest"] == tls.image.manifest.digest
    # another registry's directory is not this one's
    monkeypatch.setenv("IMAGETOOL_CERTS_D", str(tmp_path / "elsewhere"))
    with pytest.raises(RegistryError, match="x509: certificate signed by unknown authority"):
        imagetool.pull(ref, str(tmp_path / "layout3"), progress=False)


def test_tls_verify_false_checks_nothing(tls, tmp_path):
    ref = f"localhost:{tls.dns_only.port}/demo/busybox:latest"
    p = run_cli("pull", "--tls-verify=false", ref, str(tmp_path / "layout"))
    # the handshake went through (unknown CA and wrong name): what is left is the registry's answer
    assert_one_line_error(p, "manifest unknown")
    p = run_cli("pull", "-q", "--tls-verify", "false", f"{tls.good.address}/demo/busybox:latest",
                str(tmp_path / "layout"))
    assert p.returncode == 0, p.stderr


def test_cert_dir_problems_are_one_line(tls, tmp_path):
    ref = f"{tls.good.address}/demo/busybox:latest"
    p = run_cli("pull", "--cert-dir", str(tmp_path / "none"), ref, str(tmp_path / "layout"))
    assert_one_line_error(p, "--cert-dir", "no such directory")
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(tls.client[1], lonely / "client.key")
    p = run_cli("pull", "--cert-dir", str(lonely), ref, str(tmp_path / "layout"))
    assert_one_line_error(p, "client.key", "without its certificate client.cert")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ca.crt").write_text("not a certificate\n")
    p = run_cli("pull", "--cert-dir", str(bad), ref, str(tmp_path / "layout"))
    assert_one_line_error(p, "ca.crt", "not a CA certificate")
    assert not (tmp_path / "layout").exists()
