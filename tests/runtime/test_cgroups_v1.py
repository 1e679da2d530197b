"""linux.resources on this host's v1 hierarchies (legacy or hybrid): each field reaches
its cgroup file, the limits hold against real processes, and what runc 1.1 on this
machine writes is what pyrun writes (runc is the oracle).

The unified-host side is tests/runtime/test_cgroup2.py (run in a guest).
"""
import json
import os
import subprocess
import tempfile
import time

import pytest

from tests.support.bundle import read_config, write_config

CG = "/sys/fs/cgroup"

if os.path.exists(os.path.join(CG, "cgroup.controllers")):
    pytest.skip("a v1/hybrid host's hierarchies (this is a unified host: see test_cgroup2.py)",
                allow_module_level=True)


def _has(controller: str) -> bool:
    return os.path.isdir(os.path.join(CG, controller))


def cg_bundle(bundle, args, resources=None, path=None, caps=(), **linux):
    b = bundle(list(args))
    cfg = read_config(b)
    cfg["root"]["path"] = os.path.realpath(os.path.join(b, "rootfs"))  # runc refuses a symlink
    if resources is not None:
        cfg["linux"]["resources"] = resources
    if path is not None:
        cfg["linux"]["cgroupsPath"] = path
    for key, value in linux.items():
        cfg["linux"][key] = value
    for cap in caps:
        for kind in ("bounding", "effective", "permitted"):
            cfg["process"]["capabilities"][kind].append(cap)
    write_config(b, cfg)
    return b


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _pid(pyrun, cid) -> int:
    return json.loads(pyrun("state", cid, check=True).stdout)["pid"]


def _wait(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _rmdirs(*names):
    """Remove each of `names` (a path below a hierarchy's root, children first) from every
    hierarchy, where it is there and empty."""
    for name in names:
        for h in os.listdir(CG):
            try:
                os.rmdir(os.path.join(CG, h, name))
            except OSError:
                pass


class Runc:
    """runc 1.1 on this machine, run on the same bundle: what it writes is the oracle."""

    def __init__(self, root):
        self.root, self.ids = root, []

    def create(self, b, cid):
        with tempfile.TemporaryFile("w+") as err:
            p = subprocess.run(["runc", "--root", self.root, "create", "-b", b, cid], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=err, timeout=30)
            err.seek(0)
            p.stderr = err.read()
        self.ids.append(cid)
        return p

    def delete(self, cid):
        subprocess.run(["runc", "--root", self.root, "delete", "-f", cid], capture_output=True, timeout=30)


@pytest.fixture
def runc(tmp_path, root_required):
    import shutil
    if not shutil.which("runc"):
        pytest.skip("runc (the oracle) is not installed")
    r = Runc(str(tmp_path / "runc-root"))
    yield r
    for cid in r.ids:
        r.delete(cid)
    _rmdirs("cg-oracle", "cg-refused/x", "cg-refused")  # runc leaves the parents it made


# -- the limits reach the kernel --------------------------------------------------------

def test_memory_pids_and_cpu_shares_show_in_the_cgroup_files(pyrun, bundle):
    b = cg_bundle(bundle, ["sleep", "100"], {"memory": {"limit": 64 << 20}, "pids": {"limit": 8},
                                             "cpu": {"shares": 512}}, "/cg-limits")
    pyrun("run", "-d", "-b", b, "cg-limits", check=True)
    assert _read(f"{CG}/memory/cg-limits/memory.limit_in_bytes") == str(64 << 20)
    assert _read(f"{CG}/pids/cg-limits/pids.max") == "8"
    assert _read(f"{CG}/cpu/cg-limits/cpu.shares") == "512"
    pid = _pid(pyrun, "cg-limits")
    assert str(pid) in _read(f"{CG}/memory/cg-limits/cgroup.procs").split()


# Fields runc 1.1 writes on v1: pyrun must leave the same values in the same files.
ORACLE_CASES = {
    "memory": ({"memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20, "swappiness": 10,
                           "disableOOMKiller": True}},
               ["memory/memory.limit_in_bytes", "memory/memory.soft_limit_in_bytes",
                "memory/memory.memsw.limit_in_bytes", "memory/memory.swappiness", "memory/memory.oom_control"]),
    "cpu": ({"cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"}},
            ["cpu/cpu.shares", "cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us", "cpuset/cpuset.cpus",
             "cpuset/cpuset.mems"]),
    "pids": ({"pids": {"limit": 8}}, ["pids/pids.max"]),
    "throttle": ({"blockIO": {"throttleReadBpsDevice": [{"major": 7, "minor": 0, "rate": 1048576}],
                              "throttleWriteBpsDevice": [{"major": 7, "minor": 0, "rate": 2097152}],
                              "throttleReadIOPSDevice": [{"major": 7, "minor": 0, "rate": 100}],
                              "throttleWriteIOPSDevice": [{"major": 7, "minor": 0, "rate": 200}]}},
                 ["blkio/blkio.throttle.read_bps_device", "blkio/blkio.throttle.write_bps_device",
                  "blkio/blkio.throttle.read_iops_device", "blkio/blkio.throttle.write_iops_device"]),
    "blkio-weight": ({"blockIO": {"weight": 300}}, ["blkio/blkio.bfq.weight"]),
    "default-devices": ({}, ["devices/devices.list"]),
    "device-rules": ({"devices": [{"allow": False, "access": "rwm"},
                                  {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"},
                                  {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "w"},
                                  {"allow": True, "type": "b", "major": 8, "access": "rw"},
                                  {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
                                  {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "m"}]},
                     ["devices/devices.list"]),
}


@pytest.mark.parametrize("case", sorted(ORACLE_CASES))
def test_each_field_lands_where_runc_puts_it(pyrun, bundle, runc, case):
    resources, files = ORACLE_CASES[case]
    if not all(_has(f.split("/")[0]) for f in files):
        pytest.skip(f"this host lacks a controller of {files}")
    b = cg_bundle(bundle, ["sleep", "100"], resources, "/cg-oracle/x")
    assert runc.create(b, "cg-oracle").returncode == 0
    want = {f: _read(f"{CG}/{f.split('/')[0]}/cg-oracle/x/{f.split('/')[1]}") for f in files}
    runc.delete("cg-oracle")
    pyrun("create", "-b", b, "cg-oracle", check=True)
    got = {f: _read(f"{CG}/{f.split('/')[0]}/cg-oracle/x/{f.split('/')[1]}") for f in files}
    assert got == want


def test_fields_runc_1_1_drops_are_enforced_where_the_kernel_has_them(pyrun, bundle):
    """cpu.idle, cpu.burst and memory.kernelTCP: runc 1.1 ignores them; the kernel has them."""
    if not os.path.exists(f"{CG}/cpu/cpu.cfs_burst_us") or not os.path.exists(f"{CG}/memory/memory.kmem.tcp.limit_in_bytes"):
        pytest.skip("this kernel lacks cpu.cfs_burst_us or memory.kmem.tcp")
    b = cg_bundle(bundle, ["sleep", "100"], {"cpu": {"idle": 1, "burst": 1000, "quota": 50000, "period": 100000},
                                             "memory": {"kernelTCP": 16 << 20}}, "/cg-extra")
    pyrun("create", "-b", b, "cg-extra", check=True)
    assert _read(f"{CG}/cpu/cg-extra/cpu.idle") == "1"
    assert _read(f"{CG}/cpu/cg-extra/cpu.cfs_burst_us") == "1000"
    assert _read(f"{CG}/memory/cg-extra/memory.kmem.tcp.limit_in_bytes") == str(16 << 20)


def test_ten_more_processes_cannot_fork_past_pids_limit(pyrun, bundle):
    # the init forks seven sleepers and becomes the eighth (exec needs no fork): the limit
    b = cg_bundle(bundle, ["sh", "-c", "for i in 1 2 3 4 5 6 7; do sleep 100 & done; exec sleep 100"],
                  {"pids": {"limit": 8}}, "/cg-pids")
    pyrun("run", "-d", "-b", b, "cg-pids", check=True)
    procs = f"{CG}/pids/cg-pids/cgroup.procs"
    _wait(lambda: len(_read(procs).split()) == 8, what="eight processes")
    for _ in range(10):  # each exec'd shell is let in, but cannot fork
        p = pyrun("exec", "cg-pids", "sh", "-c", "sleep 100 & echo forked")
        assert p.returncode != 0 and "forked" not in p.stdout and "can't fork" in p.stderr, p.stderr
    assert len(_read(procs).split()) == 8
    assert int(_read(f"{CG}/pids/cg-pids/pids.events").split()[1]) >= 10  # the refused forks


def test_deny_all_keeps_a_device_made_with_cap_mknod_unopenable(pyrun, bundle):
    """With CAP_MKNOD the container can make any node (runc allows mknod), but not open one
    the rules do not allow: a loop device here, next to /dev/null which stays usable."""
    b = cg_bundle(bundle, ["sh", "-c", "/bin/busybox mknod /dev/cg-loop b 7 0 && echo made; "
                                       "cat /dev/cg-loop >/dev/null && echo opened; "
                                       "echo x >/dev/null && echo null-ok; exit 0"],
                  {"devices": [{"allow": False, "access": "rwm"}]}, "/cg-dev", caps=("CAP_MKNOD",))
    p = pyrun("run", "-b", b, "cg-dev")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["made", "null-ok"], p.stdout
    assert "Operation not permitted" in p.stderr


def test_64mib_written_to_tmpfs_in_a_16mib_container_is_oom_killed(pyrun, bundle):
    b = cg_bundle(bundle, ["sh", "-c", "head -c 67108864 /dev/zero > /dev/shm/fill; echo head=$?; "
                                       "wc -c < /dev/shm/fill"],
                  {"memory": {"limit": 16 << 20, "swap": 16 << 20}}, "/cg-oom")
    p = pyrun("run", "--keep", "-b", b, "cg-oom", timeout=60)
    oom = dict(line.split() for line in _read(f"{CG}/memory/cg-oom/memory.oom_control").splitlines())
    assert int(oom["oom_kill"]) >= 1, (p.returncode, p.stdout, p.stderr)
    # killed outright, or the writer was: the file never reached 64 MiB
    assert p.returncode == 137 or (p.stdout.split()[0] == "head=137" and int(p.stdout.split()[1]) < 16 << 20), \
        (p.returncode, p.stdout)


def test_events_stats_in_runcs_shape(pyrun, bundle, runc):
    b = cg_bundle(bundle, ["sh", "-c", "sleep 100 & sleep 100"], {"memory": {"limit": 64 << 20},
                                                                  "pids": {"limit": 20}}, "/cg-oracle/x")
    assert runc.create(b, "cg-oracle").returncode == 0
    want = json.loads(subprocess.run(["runc", "--root", runc.root, "events", "--stats", "cg-oracle"],
                                     capture_output=True, text=True, timeout=30).stdout)
    runc.delete("cg-oracle")
    pyrun("create", "-b", b, "cg-oracle", check=True)
    got = json.loads(pyrun("events", "--stats", "cg-oracle", check=True).stdout)

    def shape(v):
        if isinstance(v, dict):
            return {k: shape(x) for k, x in v.items()}
        return type(v).__name__ if v is not None else None
    # the same keys and types (runc leaves out zero counters: so do we; their values differ)
    assert got["type"] == want["type"] == "stats" and got["id"] == "cg-oracle"
    assert set(got["data"]) == set(want["data"])
    for key in ("cpuset", "pids", "hugetlb", "intel_rdt", "network_interfaces"):
        assert shape(got["data"][key]) == shape(want["data"][key]), key
    assert set(got["data"]["cpu"]) == set(want["data"]["cpu"]) == {"usage", "throttling"}
    for key in ("usage", "swap", "kernel", "kernelTCP"):
        assert {"limit", "failcnt"} <= set(got["data"]["memory"][key]), key
        assert set(got["data"]["memory"][key]) <= set(want["data"]["memory"][key]) | {"usage", "max"}
    assert set(got["data"]["memory"]["raw"]) == set(want["data"]["memory"]["raw"])
    assert got["data"]["memory"]["usage"]["limit"] == 64 << 20
    assert got["data"]["pids"] == {"current": 1, "limit": 20}


# -- refused, with nothing left behind ------------------------------------------------

def _leftovers(name: str) -> list[str]:
    return [os.path.join(CG, h, name) for h in os.listdir(CG) if os.path.lexists(os.path.join(CG, h, name))]


@pytest.mark.parametrize("resources,field", [
    ({"unified": {"memory.max": "1000000"}}, "linux.resources.unified"),
    ({"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]}, "linux.resources.hugepageLimits"),
    ({"network": {"classID": 1048577}}, "linux.resources.network.classID"),
    ({"network": {"priorities": [{"name": "lo", "priority": 5}]}}, "linux.resources.network.priorities"),
    ({"rdma": {"mlx4_0": {"hcaHandles": 3}}}, "linux.resources.rdma"),
    ({"memory": {"swappiness": 101}}, "linux.resources.memory.swappiness"),
    ({"memory": {"useHierarchy": False}}, "linux.resources.memory.useHierarchy"),
    ({"devices": [{"allow": True, "type": "x", "access": "rwm"}]}, "linux.resources.devices[0].type"),
    ({"devices": [{"allow": True, "type": "c", "access": ""}]}, "linux.resources.devices[0].access"),
    ({"devices": [{"allow": True, "type": "c", "major": 1, "access": "rwm"},
                  {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "r"}]}, "punch a hole"),
])
def test_what_the_host_cannot_enforce_is_refused_before_anything_is_made(pyrun, bundle, runc, resources, field):
    controller = {"linux.resources.hugepageLimits": "hugetlb", "linux.resources.network.classID": "net_cls",
                  "linux.resources.network.priorities": "net_prio", "linux.resources.rdma": "rdma"}.get(field)
    if controller and _has(controller):
        pytest.skip(f"this host has a v1 {controller} hierarchy")
    b = cg_bundle(bundle, ["true"], resources, "/cg-refused/x")
    p = pyrun("create", "-b", b, "cg-refused")
    assert p.returncode == 1 and field in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr
    assert pyrun.ids() == [] and _leftovers("cg-refused") == []
    if field != "linux.resources.memory.useHierarchy":  # runc 1.1 ignores that one
        assert runc.create(b, "cg-refused").returncode != 0  # runc refuses these too


@pytest.mark.parametrize("resources,field", [
    ({"blockIO": {"weightDevice": [{"major": 7, "minor": 0, "weight": 200}]}},
     "linux.resources.blockIO.weightDevice[0]"),
    ({"blockIO": {"leafWeight": 300}}, "linux.resources.blockIO.leafWeight"),
    ({"memory": {"kernel": 64 << 20}}, "linux.resources.memory.kernel"),
    ({"memory": {"limit": 64 << 20, "swap": 32 << 20}}, "linux.resources.memory.swap"),
    ({"cpu": {"realtimeRuntime": 10000, "realtimePeriod": 1000000}}, "linux.resources.cpu.realtimeRuntime"),
])
def test_a_file_the_kernel_lacks_or_refuses_fails_create_and_removes_every_dir_made(pyrun, bundle, resources, field):
    """Found only when written (after the cgroup was made): one line naming the field, and
    every directory create made is gone again, the parents too."""
    short = field.removeprefix("linux.resources.")
    if short == "blockIO.leafWeight" and os.path.exists(f"{CG}/blkio/blkio.leaf_weight"):
        pytest.skip("this host's blkio has leaf weights (CFQ)")
    if short.startswith("blockIO.weightDevice") and "[bfq]" in _read("/sys/block/loop0/queue/scheduler"):
        pytest.skip("loop0 is scheduled by BFQ here: per-device weights work")
    b = cg_bundle(bundle, ["true"], resources, "/cg-refused/x/y")
    p = pyrun("create", "-b", b, "cg-refused")
    if p.returncode == 0 and short == "memory.kernel":
        pytest.skip("this kernel still enforces kernel memory limits")
    assert p.returncode == 1 and field in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr
    assert pyrun.ids() == [] and _leftovers("cg-refused") == []
