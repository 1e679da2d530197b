"""Retries that heal and bounded time: a fault-injecting proxy in front of the real registry."""
from __future__ import annotations

import os
import time

import pytest

import imagetool
from imagetool.layout import Layout
from imagetool.plainhttp import PlainHTTPTransport
from imagetool.registry import RequestsTransport, TransientError
from tests.imagetool.faultproxy import FaultProxy
from tests.support import images
from tests.support.registry import free_port
from tests.imagetool.clitools import assert_one_line_error, run_cli




@pytest.fixture(scope="module")
def image(registry):
    layer = images.tar_layer([images.Entry("data", data=os.urandom(600_000))])
    img = images.build_image([layer], compress=False, cmd=["true"])  # 600 KB, incompressible
    images.push(registry.address, "demo/faults", "latest", img)
    return img


@pytest.fixture
def proxy(registry):
    with FaultProxy(registry.address) as p:
        yield p


def _ref(proxy) -> str:
    return f"{proxy.address}/demo/faults:latest"


def _events(proxy, match: str) -> list[str]:
    return [what for _, path, _, what in proxy.log if match in path]


@pytest.mark.parametrize("where", ["/manifests/", "/blobs/"])
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_then_ok_heals(proxy, image, tmp_path, where, status):
    proxy.add(where, status=status, times=2)
    dest = str(tmp_path / "layout")
    proc = run_cli("pull", _ref(proxy), dest)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == image.manifest.digest
    events = _events(proxy, where)
    assert events[:2] == [f"status {status}"] * 2 and events[2] == "forwarded 200", proxy.log
    with Layout(dest).open_blob(image.layers[0].digest) as f:
        assert f.read() == image.layers[0].data


def test_429_waits_for_retry_after(proxy, image, tmp_path):
    proxy.add("/manifests/", status=429, headers={"Retry-After": "1"})
    start = time.monotonic()
    result = imagetool.pull(_ref(proxy), str(tmp_path / "layout"))
    assert time.monotonic() - start >= 1.0
    assert result.descriptor["digest"] == image.manifest.digest
    assert _events(proxy, "/manifests/")[:2] == ["status 429", "forwarded 200"]


def test_retry_after_beyond_the_budget_gives_up_at_once(proxy, image, tmp_path):
    proxy.add("/manifests/", status=429, headers={"Retry-After": "3600"}, times=-1)
    dest = str(tmp_path / "layout")
    start = time.monotonic()
    proc = run_cli("pull", _ref(proxy), dest)
    assert time.monotonic() - start < 5.0
    assert_one_line_error(proc, "demo/faults:latest", "HTTP 429", "gave up")
    assert not os.path.exists(dest)


def test_5xx_forever_gives_up_in_bounded_time(proxy, image, tmp_path):
    proxy.add("/manifests/", status=503, times=-1)
    dest = str(tmp_path / "layout")
    start = time.monotonic()
    proc = run_cli("pull", _ref(proxy), dest)
    elapsed = time.monotonic() - start
    assert_one_line_error(proc, "demo/faults:latest", "HTTP 503", "gave up after 5 attempts")
    assert elapsed < 10.0, elapsed
    assert len(_events(proxy, "/manifests/")) == 5
    assert not os.path.exists(dest)  # nothing fetched, nothing to resume: nothing left


def test_404_and_401_are_not_retried(proxy, image, tmp_path):
    proxy.add("/manifests/", status=404, times=-1)
    proc = run_cli("pull", _ref(proxy), str(tmp_path / "layout"))
    assert_one_line_error(proc, "demo/faults:latest", "not found")
    assert len(_events(proxy, "/manifests/")) == 1


@pytest.mark.parametrize("transport", [PlainHTTPTransport, RequestsTransport])
def test_reset_mid_blob_resumes_with_range(proxy, image, tmp_path, transport):
    layer = image.layers[0]
    proxy.add(f"/blobs/{layer.digest}", reset_after=250_000)
    dest = str(tmp_path / "layout")
    result = imagetool.pull(_ref(proxy), dest, transport=transport())
    assert result.descriptor["digest"] == image.manifest.digest
    with Layout(dest).open_blob(layer.digest) as f:
        assert f.read() == layer.data
    blob_requests = [(rng, what) for _, path, rng, what in proxy.log if layer.digest in path]
    assert blob_requests[0] == (None, "reset after 250000"), blob_requests
    rng, what = blob_requests[1]
    assert what == "forwarded 206" and rng.startswith("bytes=") and rng.endswith("-"), blob_requests
    kept = int(rng[len("bytes="):-1])
    assert 0 < kept <= 250_000
    # The kept prefix was not fetched again.
    assert result.bytes_fetched == len(image.config.data) + len(layer.data)


def test_resets_forever_give_up_then_the_next_pull_resumes(proxy, image, tmp_path):
    layer = image.layers[0]
    proxy.add(f"/blobs/{layer.digest}", reset_after=100_000, times=-1)
    dest = str(tmp_path / "layout")
    start = time.monotonic()
    proc = run_cli("pull", _ref(proxy), dest)
    assert time.monotonic() - start < 15.0
    assert_one_line_error(proc, layer.digest, "gave up")
    assert Layout(dest).tags() == []  # no tag for an image that is not all there
    proxy.clear()
    result = imagetool.pull(_ref(proxy), dest)
    with Layout(dest).open_blob(layer.digest) as f:
        assert f.read() == layer.data
    assert result.bytes_fetched < len(layer.data)  # what the first pull got was kept
    assert [t for t, _ in Layout(dest).tags()] == ["latest"]
    assert sorted(os.listdir(dest)) == ["blobs", "index.json", "oci-layout"]


@pytest.mark.parametrize("cli", [True, False])
def test_refused_connection_fails_fast(tmp_path, cli):
    port = free_port()  # nothing listens there
    ref = f"127.0.0.1:{port}/demo/faults:latest"
    dest = str(tmp_path / "layout")
    start = time.monotonic()
    if cli:
        proc = run_cli("pull", ref, dest)
        assert_one_line_error(proc, ref, "connection refused")
    else:
        with pytest.raises(Exception, match="connection refused") as exc:
            imagetool.pull(ref, dest, transport=RequestsTransport())
        assert not isinstance(exc.value, TransientError)
    assert time.monotonic() - start < 5.0
    assert not os.path.exists(dest)
