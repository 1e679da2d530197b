"""The device rules mean the same on both cgroup versions: the kernel's v1 devices
controller (devices.allow/deny, written by devices.apply_v1) and the eBPF program of
devices.apply_v2 give the same verdict for every probe.

This hybrid host has both: a v1 devices hierarchy and a cgroup2 hierarchy, to which
device programs attach as on a unified host.
"""
import os

import pytest

from runtime.cgroups import devices

CG = "/sys/fs/cgroup"
V1 = f"{CG}/devices"
V2 = f"{CG}/unified"

pytestmark = pytest.mark.skipif(not (os.path.isdir(V1) and os.path.exists(f"{V2}/cgroup.procs")),
                                reason="needs a hybrid host: a v1 devices hierarchy and a cgroup2 mount")

# (type, major, minor) of the nodes probed; none of them is touched beyond open(2)
NODES = [("c", 1, 3), ("c", 1, 5), ("c", 1, 11), ("c", 1, 7), ("b", 7, 0), ("b", 7, 1), ("c", 10, 229),
         ("c", 5, 2), ("c", 136, 9), ("c", 4, 5)]

RULE_SETS = {
    "runc-default": [{"allow": False, "access": "rwm"}],
    "no-rules": [],
    "allow-all-but": [{"allow": True, "access": "rwm"},
                      {"allow": False, "type": "c", "major": 1, "minor": 11, "access": "rw"},
                      {"allow": False, "type": "b", "major": 7, "access": "w"}],
    "read-only-and-wildcards": [{"allow": False, "access": "rwm"},
                                {"allow": True, "type": "b", "major": 7, "access": "r"},
                                {"allow": True, "type": "c", "minor": 5, "access": "w"},
                                {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
                                {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "w"}],
    "reset-in-the-middle": [{"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"},
                            {"allow": True, "type": "a", "access": "rwm"},
                            {"allow": False, "type": "b", "access": "rwm"}],
}


def _verdicts(tmp: str) -> dict:
    """For each node: which of read, write, mknod the kernel lets this process do."""
    out = {}
    for kind, major, minor in NODES:
        for access, flags in (("r", os.O_RDONLY), ("w", os.O_WRONLY)):
            path = f"{tmp}/{kind}{major}_{minor}"
            try:
                os.close(os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY))
                out[(kind, major, minor, access)] = True
            except OSError as e:
                out[(kind, major, minor, access)] = e.errno != 1  # EPERM: the cgroup said no
        path = f"{tmp}/m-{kind}{major}_{minor}"
        try:
            os.mknod(path, (0o60000 if kind == "b" else 0o20000) | 0o600, os.makedev(major, minor))
            os.unlink(path)
            out[(kind, major, minor, "m")] = True
        except PermissionError:
            out[(kind, major, minor, "m")] = False
    return out


def _in_cgroup(procs: str, tmp: str) -> dict:
    """Verdicts of a child that wrote itself into `procs` first."""
    import json
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            with open(procs, "w") as f:
                f.write("0")
            os.write(w, json.dumps([[*k, v] for k, v in _verdicts(tmp).items()]).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return {tuple(x[:4]): x[4] for x in json.loads(data)}


@pytest.mark.parametrize("name", sorted(RULE_SETS))
def test_ebpf_program_and_v1_lists_agree(tmp_path, root_required, name):
    tmp = str(tmp_path)
    for kind, major, minor in NODES:
        os.mknod(f"{tmp}/{kind}{major}_{minor}", (0o60000 if kind == "b" else 0o20000) | 0o600,
                 os.makedev(major, minor))
    v1, v2 = f"{V1}/cg-devtest", f"{V2}/cg-devtest"
    os.mkdir(v1)
    os.mkdir(v2)
    try:
        devices.apply_v1(v1, RULE_SETS[name])
        devices.apply_v2(v2, RULE_SETS[name])
        by_v1 = _in_cgroup(f"{v1}/cgroup.procs", tmp)
        by_v2 = _in_cgroup(f"{v2}/cgroup.procs", tmp)
    finally:
        os.rmdir(v1)
        os.rmdir(v2)
    assert by_v1 == by_v2
    assert by_v2 != _verdicts(tmp)  # the rules took effect (this process is not confined)
    if name == "runc-default":  # the built-in allowed devices, and nothing else
        assert by_v2[("c", 1, 3, "r")] and by_v2[("c", 1, 3, "w")] and by_v2[("c", 5, 2, "w")]
        assert not by_v2[("c", 1, 11, "r")] and not by_v2[("b", 7, 0, "r")]
        assert by_v2[("b", 7, 0, "m")]  # runc lets any node be made


def test_an_update_replaces_the_program_and_keeps_one(tmp_path, root_required):
    from runtime._shim import bpf
    v2 = f"{V2}/cg-devtest"
    os.mkdir(v2)
    try:
        devices.apply_v2(v2, RULE_SETS["runc-default"])
        devices.apply_v2(v2, RULE_SETS["allow-all-but"])
        fd = os.open(v2, os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert len(bpf.prog_query_device(fd)) == 1
        finally:
            os.close(fd)
        os.mknod(f"{tmp_path}/c1_11", 0o20600, os.makedev(1, 11))
        os.mknod(f"{tmp_path}/b7_0", 0o60600, os.makedev(7, 0))
        got = _in_cgroup(f"{v2}/cgroup.procs", str(tmp_path))
    finally:
        os.rmdir(v2)
    assert got[("b", 7, 0, "r")]  # the new rules: block devices readable…
    assert not got[("c", 1, 11, "r")]  # …kmsg not


def test_a_v1_update_does_not_pass_through_deny_all(root_required):
    """From one deny-all rule set to another only the difference is written: /dev/null
    is never denied on the way (a running container keeps using it)."""
    old = devices.target(RULE_SETS["runc-default"])
    new = devices.target(RULE_SETS["read-only-and-wildcards"])
    writes = devices.transition(old, new)
    assert writes and all(line != "a" for _, line in writes)
    assert not any(name == "devices.deny" and line.startswith("c 1:3") for name, line in writes)
