"""Idmapped mounts (issue 20): uidMappings/gidMappings on a bind mount, the idmap and ridmap
options, through open_tree + mount_setattr(MOUNT_ATTR_IDMAP) + move_mount."""
import json
import os
import shutil
import subprocess

import pytest

from tests.support.bundle import make_rootfs, read_config, write_config

USERNS = {"uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
          "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}


@pytest.fixture
def shared_top():
    """A world-traversable place: a user-namespaced container's root must reach its rootfs."""
    top = "/tmp/pyrun-idmap-" + os.urandom(4).hex()
    os.makedirs(top)
    os.chmod(top, 0o755)
    yield top
    subprocess.run(["umount", "-R", os.path.join(top, "src", "sub")], capture_output=True)
    shutil.rmtree(top)


def _bundle(bundle, top, args, userns, mounts):
    b = bundle(args)
    os.unlink(os.path.join(b, "rootfs"))
    rootfs = os.path.join(top, "rootfs")
    if not os.path.exists(rootfs):
        make_rootfs(rootfs)
    os.symlink(rootfs, os.path.join(b, "rootfs"))
    for m in mounts:  # a user namespace's root may not make them in a rootfs root owns
        os.makedirs(os.path.join(rootfs, m["destination"].lstrip("/")), exist_ok=True)
    cfg = read_config(b)
    if userns:
        cfg["linux"]["namespaces"].append({"type": "user"})
        cfg["linux"].update(json.loads(json.dumps(USERNS)))
    cfg["mounts"] += mounts
    write_config(b, cfg)
    return b


def _source(top):
    src = os.path.join(top, "src")
    os.makedirs(src)
    os.chmod(src, 0o755)
    with open(os.path.join(src, "f"), "w") as f:
        f.write("x")
    os.chown(os.path.join(src, "f"), 0, 0)
    return src


def test_idmap_takes_the_containers_mappings(pyrun, bundle, shared_top):
    src = _source(shared_top)
    plain = {"destination": "/plain", "type": "bind", "source": src, "options": ["rbind"]}
    mapped = {"destination": "/mapped", "type": "bind", "source": src, "options": ["rbind", "idmap"]}
    b = _bundle(bundle, shared_top, ["stat", "-c", "%u:%g", "/plain/f", "/mapped/f"], True, [plain, mapped])
    assert pyrun.run_ok(b).split() == ["65534:65534", "0:0"]  # unmapped shows as nobody


def test_mount_mappings_without_a_user_namespace(pyrun, bundle, shared_top):
    src = _source(shared_top)
    m = {"destination": "/mapped", "type": "bind", "source": src, "options": ["rbind"],
         "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
         "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 1}]}
    b = _bundle(bundle, shared_top, ["sh", "-c", "stat -c %u:%g /mapped/f; touch /mapped/new; stat -c %u:%g /mapped/new"],
                False, [m])
    cfg = read_config(b)
    cfg["process"]["user"] = {"uid": 1000, "gid": 2000}  # the mapped owner may write there
    write_config(b, cfg)
    assert pyrun.run_ok(b).split() == ["1000:2000", "1000:2000"]
    st = os.stat(os.path.join(src, "new"))
    assert (st.st_uid, st.st_gid) == (0, 0)  # written through the mapping back to the disk's ids


def test_ridmap_maps_every_mount_below(pyrun, bundle, shared_top):
    src = _source(shared_top)
    inner = os.path.join(shared_top, "inner")
    os.makedirs(inner)
    os.chmod(inner, 0o755)
    with open(os.path.join(inner, "g"), "w") as f:
        f.write("y")
    os.makedirs(os.path.join(src, "sub"))
    subprocess.run(["mount", "--bind", inner, os.path.join(src, "sub")], check=True)  # test set-up
    maps = {"uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}
    top = {"destination": "/top", "type": "bind", "source": src, "options": ["rbind", "idmap"], **maps}
    every = {"destination": "/every", "type": "bind", "source": src, "options": ["rbind", "ridmap"], **maps}
    b = _bundle(bundle, shared_top, ["stat", "-c", "%u", "/top/f", "/top/sub/g", "/every/f", "/every/sub/g"],
                False, [top, every])
    assert pyrun.run_ok(b).split() == ["1000", "0", "1000", "1000"]


def test_features_say_idmap_is_enabled(pyrun):
    f = json.loads(pyrun("features", check=True).stdout)
    assert f["linux"]["mountExtensions"]["idmap"]["enabled"] is True
