"""imagetool.bundle: the runtime config.json made from an image config."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from imagetool.bundle import BundleError, resolve_user, runtime_config
from imagetool.inroot import Root
from imagetool.unpacker import UnpackError, unpack
from tests.support import images, layers
from tests.support.layers import Raw, raw_tar

SCHEMA_DIR = "/usr/share/gocode/src/github.com/opencontainers/runtime-spec/schema"

PASSWD = (b"root:x:0:0:root:/root:/bin/sh\n"
          b"app:x:1000:1000:App:/home/app:/bin/sh\n"
          b"# a comment\n"
          b"svc:x:999:50::/srv:/bin/false\n")
GROUP = (b"root:x:0:\nwheel:x:10:root,app\nstaff:x:50:app\napp:x:1000:\nweb:x:33:\n")


@pytest.fixture
def rootfs(tmp_path):
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_bytes(PASSWD)
    (r / "etc" / "group").write_bytes(GROUP)
    with Root(str(r)) as root:
        yield root


@pytest.mark.parametrize("user, expect", [
    ("", (0, 0, [10], "/root")),              # unset: root, with its groups (as Docker)
    ("root", (0, 0, [10], "/root")),
    ("app", (1000, 1000, [10, 50], "/home/app")),
    ("app:web", (1000, 33, [], "/home/app")),  # a group given: no additionalGids
    ("app:7", (1000, 7, [], "/home/app")),
    ("1000", (1000, 1000, [], "/home/app")),   # numeric: verbatim, no additionalGids
    ("1000:50", (1000, 50, [], "/home/app")),
    ("4242", (4242, 0, [], None)),             # numeric, unknown: still fine
    ("4242:4343", (4242, 4343, [], None)),
    ("svc", (999, 50, [], "/srv")),
])
def test_resolve_user(rootfs, user, expect):
    assert resolve_user(user, rootfs) == expect


@pytest.mark.parametrize("user, reason", [
    ("ghost", "user 'ghost' not found in the image's /etc/passwd"),
    ("app:ghosts", "group 'ghosts' not found in the image's /etc/group"),
    ("app:", "has an empty group"),
    ("99999999999", "out of range"),
])
def test_resolve_user_errors(rootfs, user, reason):
    with pytest.raises(BundleError, match=reason):
        resolve_user(user, rootfs)


def test_passwd_read_inside_root_only(tmp_path):
    """/etc is a symlink out of the root: resolved inside it, never the host's."""
    r = tmp_path / "rootfs"
    r.mkdir()
    os.symlink("../../../../../../../../usr/../etc/alt", r / "etc")
    with Root(str(r)) as root:
        with pytest.raises(BundleError, match="user 'daemon' not found"):
            resolve_user("daemon", root)  # the host has daemon; the image has no /etc
    (r / "etc").unlink()
    os.symlink("/../../../../etc", r / "etc")  # resolves to itself inside the root
    with Root(str(r)) as root:
        with pytest.raises(Exception, match="too many levels of symbolic links"):
            resolve_user("daemon", root)
    (r / "etc").unlink()
    (r / "etc").mkdir()
    os.mkfifo(r / "etc" / "passwd")
    with Root(str(r)) as root:
        with pytest.raises(Exception, match="not a regular file"):
            resolve_user("app", root)  # never opened: a FIFO would block


def test_config_fields(rootfs):
    image = {"os": "linux", "architecture": "amd64", "author": "me", "created": "2024-01-01T00:00:00Z",
             "config": {"Entrypoint": ["/bin/app"], "Cmd": ["--flag"], "Env": ["PATH=/x", "A=1"],
                        "WorkingDir": "work", "User": "app", "StopSignal": "SIGQUIT",
                        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
                        "Labels": {"org.opencontainers.image.author": "label wins", "k": "v"},
                        "Volumes": {"/data": {}}}}
    spec = runtime_config(image, rootfs)
    p = spec["process"]
    assert p["args"] == ["/bin/app", "--flag"]
    assert p["env"] == ["PATH=/x", "TERM=xterm", "A=1", "HOME=/home/app"]
    assert p["cwd"] == "/work"
    assert p["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10, 50]}
    assert p["terminal"] is False
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    a = spec["annotations"]
    assert a["org.opencontainers.image.author"] == "label wins"
    assert a["org.opencontainers.image.os"] == "linux"
    assert a["org.opencontainers.image.architecture"] == "amd64"
    assert a["org.opencontainers.image.created"] == "2024-01-01T00:00:00Z"
    assert a["org.opencontainers.image.stopSignal"] == "SIGQUIT"
    assert a["org.opencontainers.image.exposedPorts"] == "53/udp,80/tcp"
    assert a["k"] == "v"
    assert {"destination": "/data", "type": "tmpfs", "source": "none",
            "options": ["rw", "nosuid", "nodev", "noexec", "relatime"]} in spec["mounts"]


def test_image_home_kept_and_bad_env(rootfs):
    spec = runtime_config({"config": {"Env": ["HOME=/mine"]}}, rootfs)
    assert "HOME=/mine" in spec["process"]["env"]
    assert not any(e == "HOME=/root" for e in spec["process"]["env"])
    with pytest.raises(BundleError, match="'NOEQUALS' is not NAME=value"):
        runtime_config({"config": {"Env": ["NOEQUALS"]}}, rootfs)
    with pytest.raises(BundleError, match="Cmd is not a list of strings"):
        runtime_config({"config": {"Cmd": "echo hi"}}, rootfs)


def test_rootless_and_mapped_flavours(rootfs):
    spec = runtime_config({"config": {}}, rootfs, rootless=True)
    assert {"type": "user"} in spec["linux"]["namespaces"]
    assert spec["linux"]["uidMappings"][0]["hostID"] == os.geteuid()
    m = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    spec = runtime_config({"config": {}}, rootfs, uid_map=m, gid_map=m)
    assert spec["linux"]["uidMappings"] == m and spec["linux"]["gidMappings"] == m
    assert {"type": "user"} in spec["linux"]["namespaces"]


def _validator():
    jsonschema = pytest.importorskip("jsonschema")
    if not os.path.isdir(SCHEMA_DIR):
        pytest.skip("official runtime-spec schema not installed")
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    def retrieve(uri: str):
        with open(uri.removeprefix("file://")) as f:
            return Resource.from_contents(json.load(f), default_specification=DRAFT4)

    with open(os.path.join(SCHEMA_DIR, "config-schema.json")) as f:
        schema = json.load(f)
    schema["id"] = "file://" + os.path.join(SCHEMA_DIR, "config-schema.json")
    return jsonschema.Draft4Validator(schema, registry=Registry(retrieve=retrieve))


@pytest.mark.parametrize("rootless", [False, True])
def test_config_valid_against_official_schema(tmp_path, rootless):
    lay = str(tmp_path / "layout")
    layers.write_image(lay, [raw_tar([Raw("etc/passwd", data=PASSWD), Raw("etc/group", data=GROUP)])],
                       cmd=["sh", "-c", "echo hi"], user="app", workdir="/srv",
                       labels={"a": "b"})
    unpack(lay, None, str(tmp_path / "b"), rootless=rootless)
    with open(tmp_path / "b" / "config.json") as f:
        config = json.load(f)
    errors = [e.message for e in _validator().iter_errors(config)]
    assert errors == []
    # and the validator is not blind
    config["process"]["user"]["uid"] = "app"
    assert list(_validator().iter_errors(config))


@pytest.mark.skipif(os.geteuid() != 0, reason="runc needs root here")
@pytest.mark.skipif(not shutil.which("runc"), reason="runc not installed")
def test_bundle_runs_under_runc(tmp_path):
    lay = str(tmp_path / "layout")
    image = images.busybox_image(cmd=["sh", "-c", "echo hello from $(id -u):$(id -g) in $PWD"],
                                 user="nobody", workdir="/tmp")
    images.write_layout(lay, {"latest": image})
    bundle = str(tmp_path / "bundle")
    unpack(lay, "latest", bundle)
    cid = f"imagetool-test-{os.getpid()}"
    try:
        p = subprocess.run(["runc", "run", cid], cwd=bundle, capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run(["runc", "delete", "-f", cid], capture_output=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "hello from 65534:65534 in /tmp\n"


@pytest.mark.skipif(not shutil.which("umoci"), reason="umoci not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="umoci unpack needs root")
def test_process_matches_umoci(tmp_path):
    lay = str(tmp_path / "layout")
    layers.write_image(lay, [raw_tar([Raw("etc/passwd", data=PASSWD), Raw("etc/group", data=GROUP)])],
                       entrypoint=["/bin/app"], cmd=["x"], user="app", workdir="/srv",
                       env=["PATH=/bin", "A=1"], labels={"l": "v"})
    unpack(lay, None, str(tmp_path / "ours"))
    layers.umoci_unpack(lay, "latest", str(tmp_path / "umoci"))
    ours = json.load(open(tmp_path / "ours" / "config.json"))
    theirs = json.load(open(tmp_path / "umoci" / "config.json"))
    for key in ("args", "cwd", "user"):
        assert ours["process"][key] == theirs["process"][key], key
    assert sorted(ours["process"]["env"]) == sorted(theirs["process"]["env"])
    assert ours["root"]["path"] == theirs["root"]["path"]
    for k, v in ours["annotations"].items():
        assert theirs["annotations"].get(k) == v, k


def test_unpack_wraps_bundle_errors(tmp_path):
    lay = str(tmp_path / "layout")
    layers.write_image(lay, [raw_tar([Raw("a")])], env=["BROKEN"])
    with pytest.raises(UnpackError, match="'BROKEN' is not NAME=value"):
        unpack(lay, None, str(tmp_path / "b"))
    assert not (tmp_path / "b").exists()
