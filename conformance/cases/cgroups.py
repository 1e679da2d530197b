"""config-linux.md#Control groups: cgroupsPath, each linux.resources field in the host's mode
(v1 files on a legacy or hybrid host, v2 files on a unified one), the device allowlist.

What the host sees is read from the container's own cgroup (/proc/<pid>/cgroup on the host);
where a limit has a visible effect the container observes it too. A field the host's mode cannot
carry must be refused at create (the spec: a property the runtime cannot apply is an error), so
such a case passes on a refusal and on a limit that took effect, and fails on a silent ignore.
"""
import os

from conformance import host
from conformance.suite import case

MiB = 1 << 20


def limited(ctx, resources: dict, script: str = "sleep 100") -> dict:
    cfg = ctx.config()
    cfg["linux"]["cgroupsPath"] = ctx.cgroups_path()
    cfg["linux"]["resources"].update(resources)
    cfg["process"]["args"] = ["sh", "-c", script]
    return cfg


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


class Where:
    """The container's cgroup files, for the host's mode."""

    def __init__(self, ctx, pid: int):
        self.ctx, self.mode, self.dirs = ctx, host.cgroup_mode(), host.cgroup_dirs(pid)

    def file(self, v1: tuple[str, str] | None, v2: str | None) -> str:
        if self.mode == "unified":
            if v2 is None:
                self.ctx.skip("cgroup v2 has no such file")
            return os.path.join(self.dirs[""], v2)
        if v1 is None:
            self.ctx.skip("cgroup v1 has no such file")
        controller, name = v1
        if controller not in self.dirs:
            self.ctx.skip(f"the host has no v1 {controller} hierarchy")
        return os.path.join(self.dirs[controller], name)


def host_file(ctx, resources: dict, v1, v2) -> str:
    """Start a container with resources; the content of its cgroup file."""
    mode = host.cgroup_mode()
    if mode != "unified" and v1 and v1[0] not in host.v1_mounts():
        ctx.skip(f"the host ({mode}) has no v1 {v1[0]} hierarchy")
    if mode == "unified" and v2 is None:
        ctx.skip("cgroup v2 has no file for this field")
    if mode != "unified" and v1 is None:
        ctx.skip(f"the host ({mode}) runs v1 controllers, which have no file for this field")
    c = ctx.started(limited(ctx, resources))
    return read(Where(ctx, c.pid).file(v1, v2))


def _resource_case(name, resources, v1, v2, want_v1, want_v2, section="config-linux.md#Control groups"):
    @case(f"cgroups.{name}", section)
    def check(ctx):
        got = host_file(ctx, resources, v1, v2)
        want = want_v2 if host.cgroup_mode() == "unified" else want_v1
        ctx.check(got == want, f"{v2 if host.cgroup_mode() == 'unified' else v1[1]} is {got!r}, expected {want!r}")


_resource_case("memory-limit", {"memory": {"limit": 64 * MiB}},
               ("memory", "memory.limit_in_bytes"), "memory.max", str(64 * MiB), str(64 * MiB),
               "config-linux.md#Memory")
_resource_case("memory-reservation", {"memory": {"reservation": 32 * MiB}},
               ("memory", "memory.soft_limit_in_bytes"), "memory.low", str(32 * MiB), str(32 * MiB),
               "config-linux.md#Memory")
_resource_case("memory-swappiness", {"memory": {"swappiness": 17}},
               ("memory", "memory.swappiness"), None, "17", None, "config-linux.md#Memory")
_resource_case("cpu-shares", {"cpu": {"shares": 512}},
               ("cpu", "cpu.shares"), "cpu.weight", "512", "20", "config-linux.md#CPU")
_resource_case("cpu-quota", {"cpu": {"quota": 50000, "period": 100000}},
               ("cpu", "cpu.cfs_quota_us"), "cpu.max", "50000", "50000 100000", "config-linux.md#CPU")
_resource_case("cpu-period", {"cpu": {"quota": 50000, "period": 200000}},
               ("cpu", "cpu.cfs_period_us"), "cpu.max", "200000", "50000 200000", "config-linux.md#CPU")
_resource_case("cpu-mems", {"cpu": {"mems": "0"}},
               ("cpuset", "cpuset.mems"), "cpuset.mems", "0", "0", "config-linux.md#CPU")
_resource_case("pids-limit", {"pids": {"limit": 37}},
               ("pids", "pids.max"), "pids.max", "37", "37", "config-linux.md#PIDs")


@case("cgroups.memory-swap", "config-linux.md#Memory")
def memory_swap(ctx):
    """swap is the limit of memory+swap (v2's memory.swap.max holds swap minus limit)."""
    mode = host.cgroup_mode()
    if mode != "unified" and not os.path.exists(os.path.join(host.v1_mounts().get("memory", "/nonexistent"),
                                                             "memory.memsw.limit_in_bytes")):
        ctx.skip("the host's memory controller has no swap accounting")
    got = host_file(ctx, {"memory": {"limit": 64 * MiB, "swap": 128 * MiB}},
                    ("memory", "memory.memsw.limit_in_bytes"), "memory.swap.max")
    ctx.check(got == str(128 * MiB if mode != "unified" else 64 * MiB), f"swap limit {got!r}")


@case("cgroups.memory-disableOOMKiller", "config-linux.md#Memory")
def memory_oom(ctx):
    got = host_file(ctx, {"memory": {"limit": 64 * MiB, "disableOOMKiller": True}},
                    ("memory", "memory.oom_control"), None)
    ctx.check("oom_kill_disable 1" in got.splitlines(), f"memory.oom_control: {got!r}")


@case("cgroups.memory-limit-enforced", "config-linux.md#Memory")
def memory_enforced(ctx):
    """A process past the limit is killed by the OOM killer (the container sees status 137)."""
    cfg = limited(ctx, {"memory": {"limit": 16 * MiB, "swap": 16 * MiB}},
                  "head -c 96m /dev/zero | sort > /dev/null; echo status=$?")
    out = ctx.run_container(cfg).out
    ctx.check("status=137" in out, f"allocating 96 MiB under a 16 MiB limit: {out.strip()!r}")


@case("cgroups.cpu-cpus", "config-linux.md#CPU")
def cpu_cpus(ctx):
    """cpus: the cgroup's cpuset, and the CPUs the process may run on."""
    if "cpuset" not in host.v1_mounts() and host.cgroup_mode() != "unified":
        ctx.skip("the host has no cpuset hierarchy")
    cfg = limited(ctx, {"cpu": {"cpus": "0"}}, "grep Cpus_allowed_list /proc/self/status; sleep 100")
    c = ctx.started(cfg)
    got = read(Where(ctx, c.pid).file(("cpuset", "cpuset.cpus"), "cpuset.cpus"))
    ctx.check(got == "0", f"cpuset.cpus is {got!r}")
    out = c.wait_output("\n", 5)
    ctx.check(out.split()[-1:] == ["0"], f"the process sees {out.strip()!r}")


@case("cgroups.cpu-realtime", "config-linux.md#CPU")
def cpu_realtime(ctx):
    if host.cgroup_mode() == "unified":
        ctx.skip("cgroup v2 has no realtime group scheduling")
    cpu = host.v1_mounts().get("cpu")
    if not cpu or not os.path.exists(os.path.join(cpu, "cpu.rt_runtime_us")):
        ctx.skip("the host's kernel has no RT group scheduling")
    c = ctx.started(limited(ctx, {"cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 10000}}))
    w = Where(ctx, c.pid)
    got = (read(w.file(("cpu", "cpu.rt_period_us"), None)), read(w.file(("cpu", "cpu.rt_runtime_us"), None)))
    ctx.check(got == ("1000000", "10000"), f"cpu.rt_period_us, cpu.rt_runtime_us: {got}")


@case("cgroups.pids-limit-enforced", "config-linux.md#PIDs")
def pids_enforced(ctx):
    """No more processes than the limit: the shell's ninth fork fails."""
    cfg = limited(ctx, {"pids": {"limit": 8}},
                  "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 30 & echo started; done")
    p = ctx.run_container(cfg)
    started = p.out.split().count("started")
    ctx.check(started <= 7 and "can't fork" in p.err, f"{started} forks went through under pids.limit 8 "
              f"(the shell said {p.err.strip()[-80:]!r})")


def root_device() -> str:
    dev = os.stat("/").st_dev
    return f"{os.major(dev)}:{os.minor(dev)}"


def applied_or_refused(ctx, resources: dict, files: list, want, why: str) -> None:
    """Where the host can carry the field, the container's cgroup file must show it; where it
    cannot, create must fail. files: (controller, file) candidates, '' the v2 controller."""
    wants = [want] if isinstance(want, str) else list(want)
    c, p = ctx.create(limited(ctx, resources), check=False)
    if p.ok:
        dirs = host.cgroup_dirs(c.pid)
        found = [os.path.join(dirs[k], name) for k, name in files if k in dirs
                 and os.path.exists(os.path.join(dirs[k], name))]
        ctx.check(found, f"create accepted {why}, and the container's cgroup has no {[f[1] for f in files]}")
        got = read(found[0])
        ctx.check(any(w in got.splitlines() or got == w for w in wants),
                  f"{why}: {found[0]} is {got!r}, expected {' or '.join(map(repr, wants))}")
        return
    probe = carriable(ctx, files)
    ctx.check(not probe, f"create refused {why}, which the host carries ({probe}): {p.why()}")


def unified_root() -> str | None:
    mode = host.cgroup_mode()
    return {"unified": host.CGROUP_ROOT, "hybrid": host.CGROUP_ROOT + "/unified"}.get(mode)


def carriable(ctx, files: list) -> str:
    """The first of files a fresh cgroup of this host has ('' if none)."""
    for controller, name in files:
        base = unified_root() if controller == "" else host.v1_mounts().get(controller)
        if not base:
            continue
        d = ctx.own_cgroup_dir(os.path.join(base, f"cf-{ctx.run.token}-{ctx.index}-probe"))
        if os.path.exists(os.path.join(d, name)):
            return name
    return ""


@case("cgroups.blockIO-weight", "config-linux.md#Block IO")
def blkio_weight(ctx):
    applied_or_refused(ctx, {"blockIO": {"weight": 300}},
                       [("blkio", "blkio.weight"), ("blkio", "blkio.bfq.weight"), ("", "io.bfq.weight"),
                        ("", "io.weight")], ("300", "default 300"), "blockIO.weight")


@case("cgroups.blockIO-throttleReadBpsDevice", "config-linux.md#Block IO")
def blkio_read_bps(ctx):
    maj, mi = root_device().split(":")
    rule = [{"major": int(maj), "minor": int(mi), "rate": MiB}]
    applied_or_refused(ctx, {"blockIO": {"throttleReadBpsDevice": rule}},
                       [("blkio", "blkio.throttle.read_bps_device"), ("", "io.max")],
                       f"{root_device()} {MiB}", "throttleReadBpsDevice")


@case("cgroups.blockIO-throttleWriteIOPSDevice", "config-linux.md#Block IO")
def blkio_write_iops(ctx):
    maj, mi = root_device().split(":")
    rule = [{"major": int(maj), "minor": int(mi), "rate": 250}]
    applied_or_refused(ctx, {"blockIO": {"throttleWriteIOPSDevice": rule}},
                       [("blkio", "blkio.throttle.write_iops_device"), ("", "io.max")],
                       f"{root_device()} 250", "throttleWriteIOPSDevice")


@case("cgroups.hugepageLimits", "config-linux.md#Huge page limits")
def hugepages(ctx):
    if not os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        ctx.skip("the host has no 2 MB huge pages")
    applied_or_refused(ctx, {"hugepageLimits": [{"pageSize": "2MB", "limit": 8 * MiB}]},
                       [("hugetlb", "hugetlb.2MB.limit_in_bytes"), ("", "hugetlb.2MB.max")],
                       str(8 * MiB), "hugepageLimits (2MB)")


@case("cgroups.network-classID", "config-linux.md#Network")
def net_cls(ctx):
    applied_or_refused(ctx, {"network": {"classID": 1048577}}, [("net_cls", "net_cls.classid")],
                       "1048577", "network.classID")


@case("cgroups.unified", "config-linux.md#Unified")
def unified(ctx):
    applied_or_refused(ctx, {"unified": {"pids.max": "23"}}, [("", "pids.max")], "23", "unified pids.max")


@case("cgroups.path", "config-linux.md#Cgroups Path")
def cgroups_path(ctx):
    """An absolute cgroupsPath is taken relative to the cgroups mount point."""
    cfg = limited(ctx, {"pids": {"limit": 50}})
    path = cfg["linux"]["cgroupsPath"]
    c = ctx.started(cfg)
    dirs = host.cgroup_dirs(c.pid)
    wanted = [""] if host.cgroup_mode() == "unified" else [k for k in ("pids", "memory", "cpu") if k in dirs]
    wrong = {k: dirs[k] for k in wanted if not dirs[k].endswith(path)}
    ctx.check(wanted and not wrong, f"the process's cgroups: {wrong or dirs}, cgroupsPath {path}")


# --- device allowlist ---------------------------------------------------------------------------

# A char device number no driver has: with access allowed, open fails ENXIO; denied, EPERM.
NO_DRIVER = (241, 0)
DEV_PROBE = (f"mknod /tmp/d c {NO_DRIVER[0]} {NO_DRIVER[1]} 2>/dev/null || echo mknod-denied; "
             "head -c 1 /tmp/d 2>&1; echo END")


def _devices(ctx, rules: list[dict]) -> str:
    cfg = ctx.config()
    caps = cfg["process"]["capabilities"]
    for k in ("bounding", "effective", "permitted"):
        caps[k] = caps[k] + ["CAP_MKNOD"]
    cfg["linux"]["resources"]["devices"] = rules
    return ctx.sh(DEV_PROBE, cfg, check=False)


def _denied(out: str) -> bool:
    return "mknod-denied" in out or "Operation not permitted" in out


DENY_ALL = {"allow": False, "access": "rwm"}
ALLOW_IT = {"allow": True, "type": "c", "major": NO_DRIVER[0], "minor": NO_DRIVER[1], "access": "rwm"}


@case("cgroups.devices-deny", "config-linux.md#Allowed device list")
def devices_deny(ctx):
    out = _devices(ctx, [DENY_ALL])
    ctx.check(_denied(out), f"a device outside the allowlist was opened: {out!r}")


@case("cgroups.devices-allow", "config-linux.md#Allowed device list")
def devices_allow(ctx):
    out = _devices(ctx, [DENY_ALL, ALLOW_IT])
    ctx.check("No such device or address" in out and not _denied(out), f"the allowed device: {out!r}")


@case("cgroups.devices-listed-order", "config-linux.md#Allowed device list")
def devices_order(ctx):
    """Entries apply in the listed order: a later deny takes back an earlier allow."""
    out = _devices(ctx, [DENY_ALL, ALLOW_IT, dict(ALLOW_IT, allow=False)])
    ctx.check(_denied(out), f"the device denied last was opened: {out!r}")
