"""imagetool.plainhttp: the socket HTTP/1.1 client for plain-HTTP registries.

Framing cases the real registry never sends (chunked, until-close, broken framing) come from
a scripted server; redirects to blob storage and keep-alive go through the real registry."""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading

import pytest

import imagetool
from imagetool.layout import Layout
from imagetool.plainhttp import PlainHTTPTransport, join_url, split_url
from imagetool.registry import Client, RegistryError, RetryPolicy
from tests.imagetool.faultproxy import FaultProxy
from tests.support import images


class Scripted:
    """A TCP server on 127.0.0.1 answering each connection's requests with canned bytes."""

    def __init__(self, answers: list[bytes], close_after_each: bool = False):
        self.answers = list(answers)
        self.close_after_each = close_after_each
        self.connections = 0
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                while self.answers:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        data = conn.recv(65536)
                        if not data:
                            break
                        head += data
                    if not head:
                        break
                    self.requests.append(head)
                    conn.sendall(self.answers.pop(0))
                    if self.close_after_each:
                        break

    def close(self):
        self.sock.close()


def _get(transport, url):
    resp = transport.request("GET", url, {})
    try:
        return resp.status, resp.headers, resp.read()
    finally:
        resp.release()


def test_content_length_and_keep_alive():
    srv = Scripted([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello"] * 3)
    t = PlainHTTPTransport(timeout=5)
    for _ in range(3):
        status, headers, body = _get(t, f"http://{srv.address}/v2/")
        assert (status, body, headers.get("x-a"), headers.get("X-A")) == (200, b"hello", "1", "1")
    assert srv.connections == 1  # one connection for the three requests
    assert srv.requests[0].startswith(b"GET /v2/ HTTP/1.1\r\nHost: " + srv.address.encode())


def test_chunked_body_with_extensions_and_trailers():
    body = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n")
    srv = Scripted([body, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    t = PlainHTTPTransport(timeout=5)
    assert _get(t, f"http://{srv.address}/a")[2] == b"hello world"
    assert _get(t, f"http://{srv.address}/b")[2] == b"ok"  # framing kept: the connection is reused
    assert srv.connections == 1


def test_body_until_close_is_read_and_the_connection_not_reused():
    srv = Scripted([b"HTTP/1.1 200 OK\r\n\r\nall of it", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"],
                   close_after_each=True)
    t = PlainHTTPTransport(timeout=5)
    assert _get(t, f"http://{srv.address}/a")[2] == b"all of it"
    assert _get(t, f"http://{srv.address}/b")[2] == b"x"
    assert srv.connections == 2


def test_a_server_closing_an_idle_connection_is_retried_once_on_a_fresh_one():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    srv = Scripted([ok, ok], close_after_each=True)  # keeps nothing alive, says nothing
    t = PlainHTTPTransport(timeout=5)
    assert _get(t, f"http://{srv.address}/a")[2] == b"ok"
    assert _get(t, f"http://{srv.address}/b")[2] == b"ok"
    assert srv.connections == 2


@pytest.mark.parametrize("answer,needle,attempts", [
    (b"SMTP ready\r\n\r\n", "malformed status line", 1),
    (b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", "malformed Content-Length", 1),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk size", 1),
    # A body cut short may heal: asked for again, then given up on.
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "bytes before the body's end", 3),
])
def test_broken_framing_is_one_line(answer, needle, attempts):
    srv = Scripted([answer] * attempts, close_after_each=True)
    client = Client(srv.address, plain_http=True, retry=RetryPolicy(attempts=3, base_delay=0.01))
    with pytest.raises(RegistryError) as exc:
        client.get_manifest("demo/x", "latest", "demo/x:latest")
    assert needle in str(exc.value) and "\n" not in str(exc.value)
    assert len(srv.requests) == attempts


def test_url_helpers():
    assert split_url("http://h:5/v2/a/blobs/x?y=1") == ("http", "h:5", "/v2/a/blobs/x?y=1")
    assert split_url("HTTP://h") == ("http", "h", "/")
    base = "http://reg:5000/v2/a/blobs/sha256:x"
    assert join_url(base, "http://s3:9000/b?sig=1") == "http://s3:9000/b?sig=1"
    assert join_url(base, "/other") == "http://reg:5000/other"
    assert join_url(base, "//cdn/x") == "http://cdn/x"
    assert join_url(base, "rel") == "http://reg:5000/v2/a/blobs/rel"


# -- against the real registry ----------------------------------------------------------

def test_blob_redirects_to_another_host_are_followed(registry, tmp_path):
    layer = images.tar_layer([images.Entry("r", data=os.urandom(50_000))])
    image = images.build_image([layer], cmd=["true"])
    images.push(registry.address, "demo/redirect", "latest", image)
    storage = FaultProxy(registry.address).start()   # "blob storage": a different host:port
    front = FaultProxy(registry.address).start()
    try:
        for blob in image.blobs():
            front.add(f"/blobs/{blob.digest}", status=307,
                      headers={"Location": f"http://{storage.address}/v2/demo/redirect/blobs/{blob.digest}"})
        result = imagetool.pull(f"{front.address}/demo/redirect:latest", str(tmp_path / "l"),
                                )
        assert result.descriptor["digest"] == image.manifest.digest
        with Layout(str(tmp_path / "l")).open_blob(image.layers[0].digest) as f:
            assert hashlib.sha256(f.read()).hexdigest() == image.layers[0].digest.split(":")[1]
        assert sorted(p for _, p, _, w in storage.log) == sorted(
            f"/v2/demo/redirect/blobs/{b.digest}" for b in image.blobs())
    finally:
        front.stop()
        storage.stop()


def _cli_imports(*args: str) -> set[str]:
    """The modules `imagetool ARGS` imports, as -X importtime lists them (the fast path
    leaves with os._exit, so nothing can look at sys.modules after it)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "imagetool.cli", *args],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return {line.rpartition("|")[2].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:")}


def test_cli_pull_never_imports_http_client(seeded, tmp_path):
    """The small-image path stays off http.client, requests and click (import cost), off
    re and json (~3 ms each, through the reference grammar and the auth file), and off
    socket (~4 ms with enum and selectors: _socket is enough for plain HTTP) and ssl."""
    ref = f"{seeded['registry'].address}/demo/busybox:latest"
    loaded = _cli_imports("pull", ref, str(tmp_path / "l"))
    assert "imagetool.puller" in loaded
    assert loaded & {"http.client", "requests", "click", "oras", "jsonschema", "urllib.parse",
                     "re", "json", "socket", "ssl"} == set()
    loaded = _cli_imports("unpack", f"{tmp_path}/l:latest", str(tmp_path / "b"))
    assert "imagetool.unpacker" in loaded and "click" not in loaded
