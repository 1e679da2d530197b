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


# -- linux.resources on cgroup v2 -----------------------------------------------------

def _cg_bundle(bundle, args, resources=None, path=None, caps=()):
    b = bundle(list(args))
    cfg = read_config(b)
    if resources is not None:
        cfg["linux"]["resources"] = resources
    if path is not None:
        cfg["linux"]["cgroupsPath"] = path
    for cap in caps:
        for kind in ("bounding", "effective", "permitted"):
            cfg["process"]["capabilities"][kind].append(cap)
    write_config(b, cfg)
    return b


def _read(path):
    with open(path) as f:
        return f.read().strip()


def test_limits_reach_memory_max_pids_max_cpu_max_and_cpu_weight(pyrun, bundle):
    """In a nested path (the parents pyrun makes hand their controllers down)."""
    b = _cg_bundle(bundle, ["sleep", "100"], {
        "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 96 << 20},
        "pids": {"limit": 8}, "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"},
        "unified": {"memory.high": str(60 << 20)}}, "/cg-v2/limits")
    pyrun("create", "-b", b, "cg-v2", check=True)
    d = os.path.join(ROOT, "cg-v2", "limits")
    assert _read(f"{d}/memory.max") == str(64 << 20)
    assert _read(f"{d}/memory.low") == str(32 << 20)
    assert _read(f"{d}/memory.high") == str(60 << 20)  # unified, written last
    if os.path.exists(f"{d}/memory.swap.max"):
        assert _read(f"{d}/memory.swap.max") == str(32 << 20)  # memory+swap less memory, as runc
    assert _read(f"{d}/pids.max") == "8"
    assert _read(f"{d}/cpu.max") == "50000 100000"
    assert _read(f"{d}/cpu.weight") == "20"  # runc 1.1: 1 + (512 - 2) * 9999 / 262142
    assert _read(f"{d}/cpuset.cpus") == "0"
    pyrun("delete", "cg-v2", check=True)
    assert not os.path.exists(os.path.join(ROOT, "cg-v2"))  # the parent it made, too


def test_an_oom_kill_is_counted_in_memory_events(pyrun, bundle):
    b = _cg_bundle(bundle, ["sh", "-c", "head -c 67108864 /dev/zero > /dev/shm/fill; echo head=$?"],
                   {"memory": {"limit": 16 << 20, "swap": 16 << 20}}, "/cg-oom")
    p = pyrun("run", "--keep", "-b", b, "cg-oom", timeout=300)
    events = dict(line.split() for line in _read(os.path.join(ROOT, "cg-oom", "memory.events")).splitlines())
    assert int(events["oom_kill"]) >= 1, (p.returncode, p.stdout, p.stderr)


def test_an_ebpf_device_rule_makes_a_device_unopenable(pyrun, bundle):
    b = _cg_bundle(bundle, ["sh", "-c", "/bin/busybox mknod /dev/cg-loop b 7 0 && echo made; "
                                        "cat /dev/cg-loop >/dev/null && echo opened; "
                                        "echo x >/dev/null && echo null-ok; exit 0"],
                   {"devices": [{"allow": False, "access": "rwm"}]}, "/cg-dev", caps=("CAP_MKNOD",))
    p = pyrun("run", "-b", b, "cg-dev", timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["made", "null-ok"], p.stdout
    assert "Operation not permitted" in p.stderr


def test_update_and_events_stats_on_v2(pyrun, bundle):
    b = _cg_bundle(bundle, ["sleep", "100"], {"memory": {"limit": 64 << 20},
                                              "cpu": {"quota": 50000, "period": 100000}}, "/cg-upd")
    pyrun("run", "-d", "-b", b, "cg-upd", check=True)
    pyrun("update", "--memory", "32m", "--cpu-quota", "20000", "--pids-limit", "10", "cg-upd", check=True)
    d = os.path.join(ROOT, "cg-upd")
    assert _read(f"{d}/memory.max") == str(32 << 20)
    assert _read(f"{d}/cpu.max") == "20000 100000"  # the period kept
    assert _read(f"{d}/pids.max") == "10"
    stats = json.loads(pyrun("events", "--stats", "cg-upd", check=True).stdout)
    assert stats["data"]["memory"]["usage"]["limit"] == 32 << 20
    assert stats["data"]["pids"] == {"current": 1, "limit": 10}
    pyrun("pause", "cg-upd", check=True)
    pyrun("kill", "cg-upd", "KILL", check=True)
    import time
    deadline = time.monotonic() + 60
    while json.loads(pyrun("state", "cg-upd", check=True).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline, "a frozen container survived SIGKILL"
        time.sleep(0.1)


def test_what_v2_cannot_do_is_refused_with_one_line(pyrun, bundle):
    for resources, field in (({"memory": {"disableOOMKiller": True}}, "memory.disableOOMKiller"),
                             ({"cpu": {"realtimeRuntime": 1000}}, "cpu.realtimeRuntime"),
                             ({"memory": {"swappiness": 10}}, "memory.swappiness"),
                             ({"unified": {"cgroup.procs": "1"}}, "unified"),
                             ({"unified": {"../cgroup.procs": "1"}}, "unified")):
        p = pyrun("create", "-b", _cg_bundle(bundle, ["true"], resources, "/cg-refused"), "cg-refused")
        assert p.returncode == 1 and field in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr
        assert pyrun.ids() == [] and not os.path.exists(os.path.join(ROOT, "cg-refused"))
