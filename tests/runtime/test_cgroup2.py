"""What only a unified (cgroup v2) host shows: born into the cgroup, cgroup2 mounts, cgroup.freeze.

This machine is hybrid, so these run in the guest of tests/test_cgroup2_vm.py; on a
host that is not unified they skip, saying so. In the guest they must not skip.
"""
import json
import os

import pytest

from tests.support.bundle import read_config, write_config
from tests.support.cgroup2vm import GUEST_ENV

ROOT = "/sys/fs/cgroup"


def _unified() -> bool:
    return os.path.exists(os.path.join(ROOT, "cgroup.controllers"))


if not _unified():
    if os.environ.get(GUEST_ENV):
        raise RuntimeError("in the cgroup v2 guest, but /sys/fs/cgroup is not a unified hierarchy")
    pytest.skip("needs a unified cgroup v2 host (tests/test_cgroup2_vm.py runs these in a guest)",
                allow_module_level=True)


def _pid(pyrun, cid):
    return json.loads(pyrun("state", cid, check=True).stdout)["pid"]


def test_init_is_born_in_its_cgroup_which_delete_removes(pyrun, bundle):
    pyrun("run", "-d", "-b", bundle(["sleep", "100"]), "v1", check=True)
    pid = _pid(pyrun, "v1")
    with open(f"/proc/{pid}/cgroup") as f:
        assert f.read() == "0::/v1\n"
    with open(os.path.join(ROOT, "v1", "cgroup.procs")) as f:
        assert f.read().split() == [str(pid)]
    pyrun("delete", "--force", "v1", check=True)
    assert not os.path.exists(os.path.join(ROOT, "v1"))


def test_exec_joins_the_containers_cgroup(pyrun, bundle):
    pyrun("run", "-d", "-b", bundle(["sleep", "100"]), "v1", check=True)
    p = pyrun("exec", "v1", "cat", "/proc/self/cgroup", check=True)
    assert p.stdout == "0::/v1\n"


def test_cgroup_namespace_is_rooted_at_the_container_and_mounts_cgroup2(pyrun, bundle):
    b = bundle(["sh", "-c", "cat /proc/self/cgroup; grep ' /sys/fs/cgroup ' /proc/self/mountinfo;"
                            "while read p; do echo $p; done </sys/fs/cgroup/cgroup.procs; touch /sys/fs/cgroup/x 2>/dev/null || echo ro"])
    cfg = read_config(b)
    cfg["linux"]["namespaces"].append({"type": "cgroup"})
    write_config(b, cfg)
    p = pyrun("run", "-b", b, "v1")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "0::/"
    assert " - cgroup2 " in lines[1] and " ro," in lines[1]
    assert lines[2:] == ["1", "ro"]  # the container's own cgroup, read-only as configured


def test_cgroup_mount_without_a_namespace_binds_the_containers_cgroup(pyrun, bundle):
    b = bundle(["sh", "-c", "cat /proc/self/cgroup; grep ' /sys/fs/cgroup ' /proc/self/mountinfo;"
                            "while read p; do echo $p; done </sys/fs/cgroup/cgroup.procs; touch /sys/fs/cgroup/x 2>/dev/null || echo ro"])
    assert all(n["type"] != "cgroup" for n in read_config(b)["linux"]["namespaces"])
    p = pyrun("run", "-b", b, "v1")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "0::/v1"
    fields = lines[1].split()
    assert fields[3] == "/v1" and " ro," in lines[1]  # the bind's root is the container's cgroup
    assert lines[2:] == ["1", "ro"]


def test_pause_freezes_through_cgroup_freeze(pyrun, bundle):
    pyrun("run", "-d", "-b", bundle(["sleep", "100"]), "v1", check=True)
    pyrun("pause", "v1", check=True)
    with open(os.path.join(ROOT, "v1", "cgroup.freeze")) as f:
        assert f.read().strip() == "1"
    assert json.loads(pyrun("state", "v1", check=True).stdout)["status"] == "paused"
    pyrun("resume", "v1", check=True)
    with open(os.path.join(ROOT, "v1", "cgroup.freeze")) as f:
        assert f.read().strip() == "0"
    assert json.loads(pyrun("state", "v1", check=True).stdout)["status"] == "running"
