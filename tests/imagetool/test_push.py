"""push, copy, inspect docker:// and list-tags against a real docker-registry, with
skopeo as the oracle (issue 19). A FaultProxy in front of the registry records each
request, so what goes over the wire (HEAD, mounts, PATCH, manifest last) is checked."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

import imagetool
from imagetool.layout import Layout
from imagetool.pusher import PushError, copy, push
from imagetool.registry import AuthError
from tests.imagetool.conftest import PASSWORD, USER
from tests.imagetool.faultproxy import FaultProxy
from tests.support import images, layers

from .clitools import assert_one_line_error, run_cli

needs_skopeo = pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo not installed")
needs_umoci = pytest.mark.skipif(not shutil.which("umoci"), reason="umoci not installed")


def _skopeo(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)


def _image(name: str, size: int = 300_000) -> images.Image:
    layer = images.tar_layer([images.Entry("data", data=os.urandom(size)),
                              images.Entry("name", data=name.encode())])
    return images.build_image([layer], cmd=["cat", "/name"])


def _layout_of(tmp_path, image, tag="v1") -> str:
    lay = str(tmp_path / "layout")
    images.write_layout(lay, {tag: image})
    return lay


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.address) as p:
        yield p


def _blob_requests(log, digest: str) -> list[str]:
    return [f"{m} {path.split('?')[0].rsplit('/', 1)[-1] if 'uploads' not in path else 'upload'}"
            for m, path, _, _ in log if digest in path or ("uploads" in path and m != "GET")]


# -- push ---------------------------------------------------------------------------------

@needs_skopeo
def test_push_then_pull_back_same_digests(registry, tmp_path):
    image = _image("roundtrip")
    lay = _layout_of(tmp_path, image)
    ref = f"{registry.address}/pushed/roundtrip:v1"
    p = run_cli("push", f"{lay}:v1", ref)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == image.manifest.digest
    info = json.loads(_skopeo("inspect", "--tls-verify=false", f"docker://{ref}").stdout)
    assert info["Digest"] == image.manifest.digest
    assert info["Layers"] == [layer.digest for layer in image.layers]
    back = imagetool.pull(ref, str(tmp_path / "back"), progress=False)
    assert back.descriptor["digest"] == image.manifest.digest
    for blob in image.blobs():
        with Layout(str(tmp_path / "back")).open_blob(blob.digest) as f:
            assert f.read() == blob.data


def test_push_sends_blobs_once_and_the_manifest_last(proxy, tmp_path):
    image = _image("twice")
    lay = _layout_of(tmp_path, image)
    ref = f"{proxy.address}/pushed/twice:v1"
    first = push(lay, "v1", ref)
    assert sorted(first.sent) == sorted(b.digest for b in image.blobs()) and not first.skipped
    log = [(m, path) for m, path, _, _ in proxy.log]
    assert log[-1] == ("PUT", "/v2/pushed/twice/manifests/v1")
    puts = [i for i, (m, path) in enumerate(log) if m == "PUT" and "digest=" in path]
    assert len(puts) == 2 and max(puts) < len(log) - 1
    assert not any(m == "PATCH" for m, _ in log)  # monolithic: POST then one PUT each
    proxy.clear()
    again = push(lay, "v1", ref)
    assert again.sent == [] and sorted(again.skipped) == sorted(b.digest for b in image.blobs())
    methods = [m for m, _, _, _ in proxy.log]
    assert methods.count("HEAD") == 2 and "POST" not in methods and methods[-1] == "PUT"


def test_chunked_push(proxy, tmp_path, registry):
    image = _image("chunked", size=700_000)
    lay = _layout_of(tmp_path, image)
    ref = f"{proxy.address}/pushed/chunked:v1"
    p = run_cli("push", "--chunk-size", "256k", f"{lay}:v1", ref)
    assert p.returncode == 0, p.stderr
    layer = image.layers[0]
    patches = [r for r in proxy.log if r[0] == "PATCH"]
    assert len(patches) == -(-len(layer.data) // (256 << 10)) + 1  # the layer's chunks, the config's one
    back = imagetool.pull(f"{registry.address}/pushed/chunked:v1", str(tmp_path / "back"), progress=False)
    assert back.descriptor["digest"] == image.manifest.digest


def test_cross_repository_mount(proxy, tmp_path):
    image = _image("mount")
    lay = _layout_of(tmp_path, image)
    push(lay, "v1", f"{proxy.address}/pushed/mount-source:v1")
    proxy.clear()
    result = push(lay, "v1", f"{proxy.address}/pushed/mount-target:v1",
                  mount_from="pushed/mount-source")
    assert sorted(result.mounted) == sorted(b.digest for b in image.blobs()) and not result.sent
    mounts = [(path, what) for m, path, _, what in proxy.log if m == "POST"]
    assert len(mounts) == 2 and all("mount=" in p and "from=pushed/mount-source" in p
                                    and w == "forwarded 201" for p, w in mounts)
    assert not any(m in ("PUT", "PATCH") and "blobs" in path for m, path, _, _ in proxy.log)


def test_mount_refused_falls_back_to_upload(proxy, tmp_path):
    """A source repository without the blob: the registry opens an upload instead (202)."""
    image = _image("mount-miss")
    lay = _layout_of(tmp_path, image)
    result = push(lay, "v1", f"{proxy.address}/pushed/mount-miss:v1", mount_from="pushed/nothing-here")
    assert sorted(result.sent) == sorted(b.digest for b in image.blobs()) and not result.mounted
    assert [w for m, p, _, w in proxy.log if m == "POST"] == ["forwarded 202"] * 2


@needs_skopeo
def test_push_a_layout_skopeo_made_with_an_index(seeded, tmp_path):
    reg = seeded["registry"]
    lay = str(tmp_path / "skopeo")
    out = _skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{reg.address}/demo/multi:latest",
                  f"oci:{lay}:multi")
    assert out.returncode == 0, out.stderr
    index = seeded["index"]
    ref = f"{reg.address}/pushed/from-skopeo:multi"
    result = push(lay, "multi", ref)
    assert result.digest == index.manifest.digest
    raw = _skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}").stdout
    assert raw.encode() == index.manifest.data
    for image in index.images:
        info = json.loads(_skopeo("inspect", "--tls-verify=false",
                                  f"docker://{reg.address}/pushed/from-skopeo@{image.manifest.digest}").stdout)
        assert info["Layers"] == [layer.digest for layer in image.layers]


@needs_umoci
@needs_skopeo
def test_push_a_layout_umoci_made(registry, tmp_path):
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hello").write_text("from umoci\n")
    lay = str(tmp_path / "umoci")
    layers.umoci_layout_from_dir(lay, "t", str(src))
    desc = Layout(lay).resolve("t")
    ref = f"{registry.address}/pushed/from-umoci:t"
    p = run_cli("push", f"{lay}:t", ref)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == desc["digest"]
    info = json.loads(_skopeo("inspect", "--tls-verify=false", f"docker://{ref}").stdout)
    assert info["Digest"] == desc["digest"]
    # and what comes back unpacks to the same file
    imagetool.pull(ref, str(tmp_path / "back"), progress=False)
    imagetool.unpack(str(tmp_path / "back"), "t", str(tmp_path / "bundle"))
    assert (tmp_path / "bundle" / "rootfs" / "etc" / "hello").read_text() == "from umoci\n"


def test_push_docker_v2s2_kept_as_is(seeded, tmp_path):
    reg, docker = seeded["registry"], seeded["docker"]
    lay = str(tmp_path / "keep")
    imagetool.pull(f"{reg.address}/demo/busybox:v2s2", lay, format="keep", progress=False)
    result = push(lay, "v2s2", f"{reg.address}/pushed/v2s2:kept")
    assert result.digest == docker.manifest.digest
    again = imagetool.pull(f"{reg.address}/pushed/v2s2:kept", str(tmp_path / "again"),
                           format="keep", progress=False)
    assert again.descriptor["mediaType"] == images.DOCKER_MANIFEST


def test_push_with_basic_auth(auth_registry, tmp_path):
    image = _image("auth")
    lay = _layout_of(tmp_path, image)
    ref = f"{auth_registry.address}/pushed/auth:v1"
    p = run_cli("push", f"{lay}:v1", ref)
    assert_one_line_error(p, "authentication required")
    p = run_cli("push", "--creds", f"{USER}:{PASSWORD}", f"{lay}:v1", ref)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == image.manifest.digest
    with pytest.raises(AuthError, match="refused"):
        push(lay, "v1", ref, creds=f"{USER}:wrong")


def test_push_refusals_are_one_line(registry, tmp_path):
    image = _image("bad")
    lay = _layout_of(tmp_path, image)
    ref = f"{registry.address}/pushed/bad:v1"
    assert_one_line_error(run_cli("push", f"{lay}:nope", ref), "no such tag")
    assert_one_line_error(run_cli("push", f"{tmp_path}/none:v1", ref), "no such layout")
    p = run_cli("push", "--chunk-size", "lots", f"{lay}:v1", ref)  # click's usage error
    assert p.returncode == 2 and "Invalid value for '--chunk-size'" in p.stderr
    layers.corrupt_blob(lay, image.layers[0].digest)  # same size, other bytes
    p = run_cli("push", f"{lay}:v1", ref)
    assert_one_line_error(p, image.layers[0].digest, "does not match its digest")
    os.unlink(layers.blob_file(lay, image.layers[0].digest))
    assert_one_line_error(run_cli("push", f"{lay}:v1", ref), "blob missing from layout")
    with pytest.raises(PushError, match="the image's digest is"):
        push(_layout_of(tmp_path / "x", image), "v1",
             f"{registry.address}/pushed/bad@sha256:{'0' * 64}")


# -- copy -----------------------------------------------------------------------------------

def test_copy_within_a_registry_mounts(seeded, proxy, tmp_path):
    image = seeded["oci"]
    digest = copy(f"docker://{proxy.address}/demo/busybox:latest",
                  f"docker://{proxy.address}/copied/busybox:c")
    assert digest == image.manifest.digest
    # no blob travelled: each was linked from the source repository
    assert not any(m == "GET" and "/blobs/" in path for m, path, _, _ in proxy.log)
    assert [w for m, p, _, w in proxy.log if m == "POST"] == ["forwarded 201"] * 2


def test_copy_between_registries(seeded, auth_registry, tmp_path):
    src = f"docker://{seeded['registry'].address}/demo/busybox:v2s2"
    dst = f"docker://{auth_registry.address}/copied/busybox:v2s2"
    p = run_cli("copy", "--dest-creds", f"{USER}:{PASSWORD}", src, dst)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == seeded["docker"].manifest.digest  # byte for byte, as skopeo copies
    back = imagetool.pull(dst[len("docker://"):], str(tmp_path / "back"), creds=(USER, PASSWORD),
                          format="keep", progress=False)
    assert back.descriptor["digest"] == seeded["docker"].manifest.digest


def test_copy_into_and_between_layouts(seeded, tmp_path):
    reg = seeded["registry"]
    digest = copy(f"docker://{reg.address}/demo/busybox:v2s2", f"oci:{tmp_path / 'a'}:mine")
    desc = Layout(str(tmp_path / "a")).resolve("mine")
    assert desc["digest"] == digest and desc["mediaType"] == images.OCI_MANIFEST  # pull's default
    assert copy(f"oci:{tmp_path / 'a'}:mine", f"oci:{tmp_path / 'b'}:theirs") == digest
    imagetool.unpack(str(tmp_path / "b"), "theirs", str(tmp_path / "bundle"))
    assert (tmp_path / "bundle" / "rootfs" / "bin" / "busybox").exists()
    assert copy(f"oci:{tmp_path / 'b'}:theirs", f"docker://{reg.address}/copied/layout:t") == digest
    with pytest.raises(PushError, match="expected docker://REFERENCE or oci:LAYOUT"):
        copy(f"{reg.address}/demo/busybox:latest", f"oci:{tmp_path / 'c'}")


# -- remote look-ups -----------------------------------------------------------------------------

@needs_skopeo
@pytest.mark.parametrize("ref", ["demo/busybox:latest", "demo/busybox:v2s2", "demo/multi:latest"])
def test_inspect_docker_matches_skopeo(seeded, ref):
    url = f"docker://{seeded['registry'].address}/{ref}"
    ours = run_cli("inspect", url)
    theirs = _skopeo("inspect", "--tls-verify=false", url)
    assert ours.returncode == 0 and theirs.returncode == 0, (ours.stderr, theirs.stderr)
    a, b = json.loads(ours.stdout), json.loads(theirs.stdout)
    assert list(a) == list(b)  # the same keys in the same order
    assert a == b
    for flags in (["--raw"], ["--config", "--raw"]):
        ours = run_cli("inspect", *flags, url)
        theirs = _skopeo("inspect", "--tls-verify=false", *flags, url)
        assert ours.stdout == theirs.stdout, flags
    ours = json.loads(run_cli("inspect", "--config", url).stdout)
    assert ours == json.loads(_skopeo("inspect", "--tls-verify=false", "--config", url).stdout)


@needs_skopeo
def test_list_tags_matches_skopeo(seeded):
    url = f"docker://{seeded['registry'].address}/demo/busybox"
    ours = run_cli("list-tags", url)
    assert ours.returncode == 0, ours.stderr
    assert json.loads(ours.stdout) == json.loads(_skopeo("list-tags", "--tls-verify=false", url).stdout)


def test_remote_look_ups_fail_in_one_line(seeded):
    reg = seeded["registry"].address
    assert_one_line_error(run_cli("inspect", f"docker://{reg}/demo/busybox:nope"), "manifest unknown")
    assert_one_line_error(run_cli("list-tags", f"docker://{reg}/demo/nope"), "repository not found")
    assert_one_line_error(run_cli("list-tags", f"{reg}/demo/busybox:latest"), "without a tag or digest")


class _Recorder:
    """An HTTP server that records each request's method, path and Authorization header,
    answering what `answer(method, path, headers)` returns: (status, headers, body)."""

    def __init__(self, answer):
        import http.server
        import threading
        self.seen: list[tuple[str, str, str | None]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                recorder.seen.append((self.command, self.path, self.headers.get("Authorization")))
                status, headers, body = answer(self.command, self.path, self.headers)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _any

            def log_message(self, *args):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


PAGED_TAGS = ["a", "b", "c", "d", "e"]


def _paged_tags(method, path, headers):
    """A registry's tag list paged two at a time with Link headers (distribution 2.8
    ignores `n` and sends all at once)."""
    from urllib.parse import parse_qs, urlsplit
    last = parse_qs(urlsplit(path).query).get("last", [""])[0]
    rest = [t for t in PAGED_TAGS if t > last]
    page, more = rest[:2], rest[2:]
    reply = {"Content-Type": "application/json"}
    if more:
        reply["Link"] = f'</v2/demo/paged/tags/list?n=2&last={page[-1]}>; rel="next"'
    return 200, reply, json.dumps({"name": "demo/paged", "tags": page}).encode()


def test_list_tags_follows_pages():
    server = _Recorder(_paged_tags)
    try:
        p = run_cli("list-tags", f"docker://{server.address}/demo/paged")
    finally:
        server.close()
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"Repository": f"{server.address}/demo/paged", "Tags": PAGED_TAGS}


def test_upload_location_on_another_host_gets_no_credentials(tmp_path):
    """A registry may send uploads elsewhere (a Location on another host): the bytes go
    there, our credentials do not."""
    storage = _Recorder(lambda m, p, h: (201, {}, b""))

    def registry_answer(method, path, headers):
        if not headers.get("Authorization"):
            return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""
        if method == "HEAD":
            return 404, {}, b""
        if method == "POST":
            return 202, {"Location": f"http://{storage.address}/upload/1?state=x"}, b""
        return 201, {}, b""
    registry = _Recorder(registry_answer)
    try:
        image = _image("elsewhere", size=1000)
        lay = _layout_of(tmp_path, image)
        push(lay, "v1", f"{registry.address}/pushed/elsewhere:v1", creds=("u", "secret"))
    finally:
        registry.close()
        storage.close()
    assert [m for m, _, _ in storage.seen] == ["PUT", "PUT"]
    assert all(auth is None for _, _, auth in storage.seen)
    assert all("digest=sha256:" in path for _, path, _ in storage.seen)
    assert registry.seen[-1][:2] == ("PUT", "/v2/pushed/elsewhere/manifests/v1")
