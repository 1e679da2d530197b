"""Pulls from a real docker-registry, checked against skopeo and umoci."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

import imagetool
from imagetool.layout import Layout, REF_NAME
from imagetool.registry import AuthError, RegistryError, RequestsTransport
from tests.support import images
from tests.imagetool.conftest import PASSWORD, USER


def run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "imagetool.cli", *args],
                          capture_output=True, text=True, **kw)


def assert_one_line_error(proc, *needles):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("imagetool: ")
    for n in needles:
        assert n in lines[0], lines[0]


def unique_image(tag: str) -> images.Image:
    # Content no other test pushed, so a test may corrupt it in the registry's storage.
    layer = images.tar_layer([images.Entry("data", data=os.urandom(300_000)),
                              images.Entry("name", data=tag.encode())])
    return images.build_image([layer], cmd=["cat", "/name"])


def test_pull_oci_image(seeded, tmp_path):
    reg, image = seeded["registry"], seeded["oci"]
    dest = str(tmp_path / "layout")
    proc = run_cli("pull", f"{reg.address}/demo/busybox:latest", dest)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == image.manifest.digest
    layout = Layout(dest)
    desc = layout.resolve("latest")
    assert desc["digest"] == image.manifest.digest
    assert desc["mediaType"] == images.OCI_MANIFEST
    for blob in [*image.blobs(), image.manifest]:
        with layout.open_blob(blob.digest) as f:
            assert f.read() == blob.data
    assert not os.path.exists(os.path.join(dest, ".imagetool-partial"))


def test_skopeo_and_umoci_read_our_layout(seeded, tmp_path):
    if not shutil.which("skopeo"):
        pytest.skip("skopeo not installed")
    reg, image = seeded["registry"], seeded["oci"]
    dest = str(tmp_path / "layout")
    imagetool.pull(f"{reg.address}/demo/busybox:latest", dest)
    out = subprocess.run(["skopeo", "inspect", f"oci:{dest}:latest"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["Digest"] == image.manifest.digest
    assert info["Layers"] == [l.digest for l in image.layers]
    if shutil.which("umoci"):
        out = subprocess.run(["umoci", "stat", "--json", "--image", f"{dest}:latest"],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        out = subprocess.run(["umoci", "ls", "--layout", dest], capture_output=True, text=True)
        assert out.stdout.split() == ["latest"], out


def test_reads_and_extends_a_layout_skopeo_wrote(seeded, tmp_path):
    if not shutil.which("skopeo"):
        pytest.skip("skopeo not installed")
    reg, image = seeded["registry"], seeded["oci"]
    dest = str(tmp_path / "skopeo")
    out = subprocess.run(["skopeo", "copy", "--src-tls-verify=false",
                          f"docker://{reg.address}/demo/busybox:latest", f"oci:{dest}:mine"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    proc = run_cli("inspect", f"{dest}:mine")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["Cmd"] == ["sh"]
    # Same content: the layout skopeo wrote already has every blob.
    result = imagetool.pull(f"{reg.address}/demo/busybox:latest", dest)
    assert result.fetched == []
    tags = sorted(t for t, _ in Layout(dest).tags())
    assert tags == ["latest", "mine"]


def test_repull_fetches_nothing(seeded, tmp_path):
    reg = seeded["registry"]
    dest = str(tmp_path / "layout")
    first = imagetool.pull(f"{reg.address}/demo/busybox:latest", dest)
    assert len(first.fetched) == 2 and first.bytes_fetched > 500_000
    again = imagetool.pull(f"{reg.address}/demo/busybox:latest", dest)
    assert again.fetched == [] and again.bytes_fetched == 0
    assert len(Layout(dest).tags()) == 1


def test_pull_docker_v2s2_kept_byte_for_byte(seeded, tmp_path):
    reg, image = seeded["registry"], seeded["docker"]
    dest = str(tmp_path / "layout")
    result = imagetool.pull(f"{reg.address}/demo/busybox:v2s2", dest, format="keep")
    layout = Layout(dest)
    desc = layout.resolve("v2s2")
    assert desc == result.descriptor
    assert desc["mediaType"] == images.DOCKER_MANIFEST
    assert layout.read_blob(desc["digest"]) == image.manifest.data
    config = layout.read_json(layout.read_json(desc["digest"])["config"]["digest"])
    assert config["config"]["Cmd"] == ["echo", "docker"]
    # What it costs, said in --help: skopeo 1.9's oci: transport only looks at descriptors
    # with OCI media types, and umoci 0.4.7 wants an OCI manifest, so neither reads this tag.
    if shutil.which("skopeo"):
        out = subprocess.run(["skopeo", "inspect", f"oci:{dest}:v2s2"], capture_output=True, text=True)
        assert out.returncode != 0 and "no descriptor found for reference" in out.stderr
    help_text = run_cli("pull", "--help").stdout
    assert "skopeo 1.9 and umoci 0.4.7 cannot read" in " ".join(help_text.split())


def test_pull_docker_v2s2_default_is_read_by_skopeo_and_umoci(seeded, tmp_path):
    """The default writes OCI media types, as skopeo's oci: destination does (issue 19)."""
    reg, image = seeded["registry"], seeded["docker"]
    dest = str(tmp_path / "layout")
    proc = run_cli("pull", "-q", f"{reg.address}/demo/busybox:v2s2", dest)
    assert proc.returncode == 0, proc.stderr
    layout = Layout(dest)
    desc = layout.resolve("v2s2")
    assert proc.stdout.strip() == desc["digest"] != image.manifest.digest
    assert desc["mediaType"] == images.OCI_MANIFEST
    doc = layout.read_json(desc["digest"])
    served = json.loads(image.manifest.data)
    assert doc["mediaType"] == images.OCI_MANIFEST
    assert doc["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert {d["mediaType"] for d in doc["layers"]} == {"application/vnd.oci.image.layer.v1.tar+gzip"}
    # the blobs are the registry's, untouched: same digests and sizes
    strip = lambda d: {k: v for k, v in d.items() if k != "mediaType"}  # noqa: E731
    assert strip(doc["config"]) == strip(served["config"])
    assert [strip(d) for d in doc["layers"]] == [strip(d) for d in served["layers"]]
    assert not layout.has_blob(image.manifest.digest)  # only the converted manifest is stored
    if not shutil.which("skopeo") or not shutil.which("umoci"):
        pytest.skip("skopeo or umoci not installed")
    out = subprocess.run(["skopeo", "inspect", f"oci:{dest}:v2s2"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["Digest"] == desc["digest"]
    assert info["Layers"] == [d["digest"] for d in served["layers"]]
    bundle = str(tmp_path / "umoci-bundle")
    out = subprocess.run(["umoci", "--log", "error", "unpack", "--image", f"{dest}:v2s2", bundle],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert os.path.isfile(os.path.join(bundle, "rootfs", "bin", "busybox"))
    assert json.load(open(os.path.join(bundle, "config.json")))["process"]["args"] == ["echo", "docker"]
    # --format keep stores the registry's manifest instead, in the same layout
    assert run_cli("pull", "-q", "--format", "keep", f"{reg.address}/demo/busybox:v2s2", dest).returncode == 0
    assert Layout(dest).resolve("v2s2")["digest"] == image.manifest.digest
    # and the explicit --format oci is the default's layout again
    assert run_cli("pull", "-q", "--format", "oci", f"{reg.address}/demo/busybox:v2s2", dest).returncode == 0
    assert Layout(dest).resolve("v2s2")["digest"] == desc["digest"]
    proc = run_cli("pull", "--format", "docker", f"{reg.address}/demo/busybox:v2s2", dest)
    assert proc.returncode != 0 and "--format" in proc.stderr


@pytest.mark.parametrize("platform,arch", [(None, "amd64"), ("linux/arm64", "arm64"),
                                           ("linux/arm64/v8", "arm64"), ("linux/amd64", "amd64")])
def test_pull_index_picks_platform(seeded, tmp_path, platform, arch):
    if platform is None and os.uname().machine != "x86_64":
        pytest.skip("default-platform case written for an amd64 host")
    reg, index = seeded["registry"], seeded["index"]
    dest = str(tmp_path / "layout")
    args = ["pull", f"{reg.address}/demo/multi:latest", dest] + (["--platform", platform] if platform else [])
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    expected = next(i for i in index.images if i.platform["architecture"] == arch)
    layout = Layout(dest)
    desc = layout.resolve("latest")
    assert desc["digest"] == expected.manifest.digest
    assert desc["platform"]["architecture"] == arch
    layer = layout.read_json(desc["digest"])["layers"][0]["digest"]
    assert layout.has_blob(layer)
    other = next(i for i in index.images if i is not expected)
    assert not layout.has_blob(other.layers[0].digest)


def test_pull_by_digest(seeded, tmp_path):
    reg, image = seeded["registry"], seeded["oci"]
    dest = str(tmp_path / "layout")
    result = imagetool.pull(f"{reg.address}/demo/busybox@{image.manifest.digest}", dest)
    assert result.descriptor["digest"] == image.manifest.digest
    assert Layout(dest).resolve(None)["digest"] == image.manifest.digest


def test_requests_transport_pulls_too(seeded, tmp_path):
    reg, image = seeded["registry"], seeded["oci"]
    result = imagetool.pull(f"{reg.address}/demo/busybox:latest", str(tmp_path / "l"),
                            transport=RequestsTransport(), jobs=2)
    assert result.descriptor["digest"] == image.manifest.digest
    assert sorted(result.fetched) == sorted(b.digest for b in image.blobs())


def test_corrupted_blob_is_refused_and_nothing_is_left(registry, tmp_path):
    image = unique_image("corrupt")
    images.push(registry.address, "demo/corrupt", "latest", image)
    data_path = registry.blob_data_path(image.layers[0].digest)
    with open(data_path, "r+b") as f:  # same length, different bytes
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    dest = str(tmp_path / "layout")
    proc = run_cli("pull", f"{registry.address}/demo/corrupt:latest", dest)
    assert_one_line_error(proc, image.layers[0].digest, "digest mismatch")
    assert not os.path.exists(dest)
    # Into an existing layout: the layout keeps what it had, gains nothing.
    Layout.create(dest)
    before = sorted(os.listdir(os.path.join(dest, "blobs", "sha256")))
    proc = run_cli("pull", f"{registry.address}/demo/corrupt:latest", dest)
    assert_one_line_error(proc, image.layers[0].digest)
    assert sorted(os.listdir(os.path.join(dest, "blobs", "sha256"))) == before
    assert Layout(dest).tags() == []
    assert sorted(os.listdir(dest)) == ["blobs", "index.json", "oci-layout"]


@pytest.mark.parametrize("transport", ["socket", "requests"])
def test_registry_serving_a_shorter_blob_is_a_digest_mismatch(registry, tmp_path, transport):
    """A different, shorter blob under the digest is named as a digest mismatch (with what
    the registry has), not as a connection cut short and resumed (issue 19)."""
    image = unique_image(f"shorter-{transport}")
    images.push(registry.address, f"demo/shorter-{transport}", "latest", image)
    layer = image.layers[0]
    with open(registry.blob_data_path(layer.digest), "r+b") as f:
        f.truncate(1000)
    dest = str(tmp_path / "layout")
    with pytest.raises(RegistryError) as exc:
        imagetool.pull(f"{registry.address}/demo/shorter-{transport}:latest", dest,
                       transport=RequestsTransport() if transport == "requests" else None)
    got = images.sha256(layer.data[:1000])
    assert str(exc.value) == (f"{layer.digest}: digest mismatch: the registry has a blob of 1000 "
                              f"bytes ({got}) under this digest, the manifest declares {len(layer.data)}")
    assert not os.path.exists(dest)
    if shutil.which("skopeo"):  # the oracle sees the same content
        out = subprocess.run(["skopeo", "copy", "--src-tls-verify=false",
                              f"docker://{registry.address}/demo/shorter-{transport}:latest",
                              f"oci:{tmp_path / 'skopeo'}:x"], capture_output=True, text=True)
        assert out.returncode != 0 and f"got {got}" in out.stderr, out.stderr


def test_interrupted_download_resumes_with_range(registry, tmp_path):
    image = unique_image("resume")
    images.push(registry.address, "demo/resume", "latest", image)
    layer = image.layers[0]
    dest = str(tmp_path / "layout")
    layout = Layout.create(dest)
    half = layer.data[: len(layer.data) // 2]
    os.makedirs(os.path.dirname(layout.partial_path(layer.digest)))
    with open(layout.partial_path(layer.digest), "wb") as f:
        f.write(half)
    result = imagetool.pull(f"{registry.address}/demo/resume:latest", dest)
    assert result.bytes_fetched == len(image.config.data) + len(layer.data) - len(half)
    with layout.open_blob(layer.digest) as f:
        assert f.read() == layer.data
    assert not os.path.exists(os.path.dirname(layout.partial_path(layer.digest)))


def test_garbage_partial_is_refetched_whole(registry, tmp_path):
    image = unique_image("garbage")
    images.push(registry.address, "demo/garbage", "latest", image)
    layer = image.layers[0]
    dest = str(tmp_path / "layout")
    layout = Layout.create(dest)
    os.makedirs(os.path.dirname(layout.partial_path(layer.digest)))
    with open(layout.partial_path(layer.digest), "wb") as f:
        f.write(b"\0" * 1000)
    result = imagetool.pull(f"{registry.address}/demo/garbage:latest", dest)
    with layout.open_blob(layer.digest) as f:
        assert f.read() == layer.data
    assert result.bytes_fetched >= len(layer.data)


@pytest.mark.parametrize("ref,needles", [
    ("{reg}/demo/nosuchrepo:latest", ["demo/nosuchrepo:latest", "unknown"]),
    ("{reg}/demo/busybox:nosuchtag", ["demo/busybox:nosuchtag", "manifest unknown"]),
    ("{reg}/Demo/busybox", ["Demo", "lowercase"]),
    ("{reg}/demo/busybox:bad:tag", ["invalid"]),
    ("127.0.0.1:1/demo/x", ["127.0.0.1:1/demo/x:latest", "connection refused"]),
])
def test_bad_pulls_are_one_line_and_leave_nothing(seeded, tmp_path, ref, needles):
    dest = str(tmp_path / "layout")
    proc = run_cli("pull", ref.format(reg=seeded["registry"].address), dest)
    assert_one_line_error(proc, *needles)
    assert not os.path.exists(dest)


def test_unknown_platform_is_refused(seeded, tmp_path):
    dest = str(tmp_path / "layout")
    proc = run_cli("pull", "--platform", "linux/s390x", f"{seeded['registry'].address}/demo/multi", dest)
    assert_one_line_error(proc, "linux/s390x", "linux/arm64/v8")
    assert not os.path.exists(dest)


def test_missing_layout_is_one_line(tmp_path):
    for args in (["inspect", str(tmp_path / "none")], ["ls", str(tmp_path / "none")],
                 ["inspect", f"{tmp_path}/none:tag"]):
        proc = run_cli(*args)
        assert_one_line_error(proc, str(tmp_path / "none"), "no such layout")


def test_ls_and_inspect(seeded, tmp_path):
    reg = seeded["registry"]
    dest = str(tmp_path / "layout")
    imagetool.pull(f"{reg.address}/demo/busybox:latest", dest)
    imagetool.pull(f"{reg.address}/demo/busybox:v2s2", dest, format="keep")
    proc = run_cli("ls", "--format", "json", dest)
    assert proc.returncode == 0, proc.stderr
    rows = {r["tag"]: r for r in json.loads(proc.stdout)}
    for tag, image in (("latest", seeded["oci"]), ("v2s2", seeded["docker"])):
        row = rows[tag]
        assert row["digest"] == image.manifest.digest
        assert row["platform"] == "linux/amd64"
        assert row["size"] == (len(image.manifest.data) + len(image.config.data)
                               + sum(len(layer.data) for layer in image.layers))
        assert row["created"] == json.loads(image.config.data).get("created")
    table = run_cli("ls", dest).stdout.splitlines()
    assert table[0].split() == ["TAG", "DIGEST", "PLATFORM", "SIZE", "CREATED"]
    assert sorted(line.split()[:3] for line in table[1:]) == sorted(
        [["latest", seeded["oci"].manifest.digest, "linux/amd64"],
         ["v2s2", seeded["docker"].manifest.digest, "linux/amd64"]])
    info = json.loads(run_cli("inspect", f"{dest}:v2s2").stdout)
    assert info["Cmd"] == ["echo", "docker"] and info["Architecture"] == "amd64"
    assert info["RepoTags"] == ["v2s2"]
    if shutil.which("skopeo"):  # the keys skopeo inspect has, with skopeo's values
        out = subprocess.run(["skopeo", "inspect", f"oci:{dest}:latest"], capture_output=True, text=True)
        theirs = json.loads(out.stdout)
        ours = json.loads(run_cli("inspect", f"{dest}:latest").stdout)
        for key in ("Digest", "Created", "DockerVersion", "Architecture", "Os", "Layers", "Env", "Labels"):
            assert ours[key] == theirs[key], key
    proc = run_cli("inspect", f"{dest}:nosuch")
    assert_one_line_error(proc, "nosuch", "no such tag")
    assert_one_line_error(run_cli("ls", str(tmp_path / "none")), "none", "no such layout directory")
    os.unlink(Layout(dest).blob_path(seeded["oci"].config.digest))
    assert_one_line_error(run_cli("ls", dest), seeded["oci"].config.digest, "blob missing")


# -- auth ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def auth_seeded(auth_registry, busybox):
    images.push(auth_registry.address, "private/busybox", "latest", busybox, auth=(USER, PASSWORD))
    return auth_registry


def test_basic_auth_refused_without_and_with_wrong_creds_fast(auth_seeded, tmp_path):
    ref = f"{auth_seeded.address}/private/busybox:latest"
    dest = str(tmp_path / "layout")
    for extra, needle in (([], "authentication required"),
                          (["--creds", f"{USER}:wrong"], "refused")):
        start = time.monotonic()
        proc = run_cli("pull", *extra, ref, dest)
        assert time.monotonic() - start < 2.0
        assert_one_line_error(proc, "private/busybox", needle)
        assert not os.path.exists(dest)


def test_basic_auth_accepted_with_creds(auth_seeded, busybox, tmp_path):
    ref = f"{auth_seeded.address}/private/busybox:latest"
    for transport in (None, RequestsTransport()):
        dest = str(tmp_path / f"layout-{transport is None}")
        result = imagetool.pull(ref, dest, creds=f"{USER}:{PASSWORD}", transport=transport)
        assert result.descriptor["digest"] == busybox.manifest.digest


def test_login_authfile_pull_logout(auth_seeded, busybox, tmp_path):
    authfile = str(tmp_path / "auth.json")
    host = auth_seeded.address
    proc = run_cli("login", "--authfile", authfile, "-u", USER, "--password-stdin", host,
                   input="wrong\n")
    assert_one_line_error(proc, "refused")
    assert not os.path.exists(authfile)
    proc = run_cli("login", "--authfile", authfile, "-u", USER, "--password-stdin", host,
                   input=PASSWORD + "\n")
    assert proc.returncode == 0, proc.stderr
    assert os.stat(authfile).st_mode & 0o077 == 0
    dest = str(tmp_path / "layout")
    proc = run_cli("pull", "--authfile", authfile, f"{host}/private/busybox", dest)
    assert proc.returncode == 0, proc.stderr
    if shutil.which("skopeo"):  # the file is one skopeo understands too
        out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--authfile", authfile,
                              f"docker://{host}/private/busybox"], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    assert run_cli("logout", "--authfile", authfile, host).returncode == 0
    assert_one_line_error(run_cli("logout", "--authfile", authfile, host), "not logged in")
    proc = run_cli("pull", "--authfile", authfile, f"{host}/private/busybox", str(tmp_path / "l2"))
    assert_one_line_error(proc, "authentication required")


def test_api_errors_are_typed(auth_seeded, tmp_path):
    with pytest.raises(AuthError):
        imagetool.pull(f"{auth_seeded.address}/private/busybox", str(tmp_path / "l"), creds="x:y")
    with pytest.raises(RegistryError):
        imagetool.pull(f"{auth_seeded.address}/private/busybox", str(tmp_path / "l"))
