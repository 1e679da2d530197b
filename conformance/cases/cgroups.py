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


def _resource_case(name: str, section: str, resources: dict, files: dict) -> None:
    @case(f"cgroups.{name}", section)
    def check(ctx):
        applied_or_refused(ctx, resources, files, f"linux.resources {resources}")


# (controller, file) → the value(s) it must show; controller "" is cgroup v2's
_resource_case("memory-limit", "config-linux.md#Memory", {"memory": {"limit": 64 * MiB}},
               {("memory", "memory.limit_in_bytes"): str(64 * MiB), ("", "memory.max"): str(64 * MiB)})
_resource_case("memory-reservation", "config-linux.md#Memory", {"memory": {"reservation": 32 * MiB}},
               {("memory", "memory.soft_limit_in_bytes"): str(32 * MiB), ("", "memory.low"): str(32 * MiB)})
# swap is memory+swap; v2's memory.swap.max holds swap alone (swap minus limit)
_resource_case("memory-swap", "config-linux.md#Memory", {"memory": {"limit": 64 * MiB, "swap": 128 * MiB}},
               {("memory", "memory.memsw.limit_in_bytes"): str(128 * MiB), ("", "memory.swap.max"): str(64 * MiB)})
_resource_case("memory-swappiness", "config-linux.md#Memory", {"memory": {"swappiness": 17}},
               {("memory", "memory.swappiness"): "17"})
_resource_case("memory-disableOOMKiller", "config-linux.md#Memory",
               {"memory": {"limit": 64 * MiB, "disableOOMKiller": True}},
               {("memory", "memory.oom_control"): "oom_kill_disable 1"})
# v2's cpu.weight from shares: runc's conversion, 1 + (shares - 2) * 9999 / 262142
_resource_case("cpu-shares", "config-linux.md#CPU", {"cpu": {"shares": 512}},
               {("cpu", "cpu.shares"): "512", ("", "cpu.weight"): "20"})
_resource_case("cpu-quota", "config-linux.md#CPU", {"cpu": {"quota": 50000, "period": 100000}},
               {("cpu", "cpu.cfs_quota_us"): "50000", ("", "cpu.max"): "50000 100000"})
_resource_case("cpu-period", "config-linux.md#CPU", {"cpu": {"quota": 50000, "period": 200000}},
               {("cpu", "cpu.cfs_period_us"): "200000", ("", "cpu.max"): "50000 200000"})
_resource_case("cpu-realtime", "config-linux.md#CPU",
               {"cpu": {"realtimePeriod": 1000000, "realtimeRuntime": 10000}},
               {("cpu", "cpu.rt_runtime_us"): "10000"})
_resource_case("cpu-mems", "config-linux.md#CPU", {"cpu": {"mems": "0"}},
               {("cpuset", "cpuset.mems"): "0", ("", "cpuset.mems"): "0"})
_resource_case("pids-limit", "config-linux.md#PIDs", {"pids": {"limit": 37}},
               {("pids", "pids.max"): "37", ("", "pids.max"): "37"})
# v2's io.weight from weight: runc's conversion, 1 + (weight - 10) * 9999 / 990
_resource_case("blockIO-weight", "config-linux.md#Block IO", {"blockIO": {"weight": 300}},
               {("blkio", "blkio.weight"): "300", ("blkio", "blkio.bfq.weight"): ("300", "default 300"),
                ("", "io.bfq.weight"): "default 300", ("", "io.weight"): "default 2930"})
_resource_case("network-classID", "config-linux.md#Network", {"network": {"classID": 1048577}},
               {("net_cls", "net_cls.classid"): "1048577"})
_resource_case("unified", "config-linux.md#Unified", {"unified": {"pids.max": "23"}},
               {("", "pids.max"): "23"})


def block_device(ctx) -> tuple[int, int]:
    """A block device of the host (not a loop or ram disk), for the throttling rules."""
    for name in sorted(os.listdir("/sys/block")):
        if name.startswith(("loop", "ram", "zram")):
            continue
        try:
            maj, mi = read(f"/sys/block/{name}/dev").split(":")
        except (OSError, ValueError):
            continue
        return int(maj), int(mi)
    ctx.skip("the host has no block device to throttle")


def _throttle_case(field: str, v1: str, v2_key: str, rate: int) -> None:
    @case(f"cgroups.blockIO-{field}", "config-linux.md#Block IO")
    def check(ctx):
        maj, mi = block_device(ctx)
        rule = [{"major": maj, "minor": mi, "rate": rate}]
        v2 = f"{maj}:{mi} " + " ".join(f"{k}={rate if k == v2_key else 'max'}"
                                       for k in ("rbps", "wbps", "riops", "wiops"))
        applied_or_refused(ctx, {"blockIO": {field: rule}},
                           {("blkio", v1): f"{maj}:{mi} {rate}", ("", "io.max"): v2}, field)


_throttle_case("throttleReadBpsDevice", "blkio.throttle.read_bps_device", "rbps", MiB)
_throttle_case("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device", "wiops", 250)


@case("cgroups.hugepageLimits", "config-linux.md#Huge page limits")
def hugepages(ctx):
    if not os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        ctx.skip("the host has no 2 MB huge pages")
    applied_or_refused(ctx, {"hugepageLimits": [{"pageSize": "2MB", "limit": 8 * MiB}]},
                       {("hugetlb", "hugetlb.2MB.limit_in_bytes"): str(8 * MiB),
                        ("", "hugetlb.2MB.max"): str(8 * MiB)}, "hugepageLimits (2MB)")


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
    cfg = limited(ctx, {"cpu": {"cpus": "0"}}, "grep Cpus_allowed_list /proc/self/status; sleep 100")
    c, p = ctx.create(cfg, check=False)
    files = [("cpuset", "cpuset.cpus"), ("", "cpuset.cpus")]
    if not p.ok:
        probe = carriable(ctx, files)
        ctx.check(not probe, f"create refused cpu.cpus, which the host carries ({probe}): {p.why()}")
        return
    dirs = host.cgroup_dirs(c.pid)
    found = [os.path.join(dirs[k], n) for k, n in files if k in dirs and os.path.exists(os.path.join(dirs[k], n))]
    ctx.check(found, "create accepted cpu.cpus, and the container's cgroup has no cpuset.cpus")
    ctx.check(read(found[0]) == "0", f"{found[0]} is {read(found[0])!r}")
    c.start()
    out = c.wait_output("\n", 5)
    ctx.check(out.split()[-1:] == ["0"], f"the process sees {out.strip()!r}")


@case("cgroups.pids-limit-enforced", "config-linux.md#PIDs")
def pids_enforced(ctx):
    """No more processes than the limit: the shell's ninth fork fails."""
    cfg = limited(ctx, {"pids": {"limit": 8}},
                  "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 30 & echo started; done")
    p = ctx.run_container(cfg)
    started = p.out.split().count("started")
    ctx.check(started <= 7 and "can't fork" in p.err, f"{started} forks went through under pids.limit 8 "
              f"(the shell said {p.err.strip()[-80:]!r})")


def unified_root() -> str | None:
    return {"unified": host.CGROUP_ROOT, "hybrid": host.CGROUP_ROOT + "/unified"}.get(host.cgroup_mode())


def carriable(ctx, files: list) -> str:
    """The first of files (controller, name) a fresh cgroup of this host has ('' if none)."""
    for controller, name in files:
        base = unified_root() if controller == "" else host.v1_mounts().get(controller)
        if not base:
            continue
        d = ctx.own_cgroup_dir(os.path.join(base, f"cf-{ctx.run.token}-{ctx.index}-probe"))
        if os.path.exists(os.path.join(d, name)):
            return name
    return ""


def applied_or_refused(ctx, resources: dict, files: dict, why: str) -> None:
    """Where the host can carry the field, the container's cgroup file must show it; where it
    cannot, create must fail. files: (controller, file) → the value(s) it must show."""
    c, p = ctx.create(limited(ctx, resources), check=False)
    if p.ok:
        dirs = host.cgroup_dirs(c.pid)
        found = [(os.path.join(dirs[k], name), want) for (k, name), want in files.items()
                 if k in dirs and os.path.exists(os.path.join(dirs[k], name))]
        ctx.check(found, f"create accepted {why}, and the container's cgroup has no "
                         f"{sorted({name for _, name in files})}")
        path, want = found[0]
        got = read(path)
        wants = [want] if isinstance(want, str) else list(want)
        ctx.check(any(w == got or w in got.splitlines() for w in wants),
                  f"{why}: {path} is {got!r}, expected {' or '.join(map(repr, wants))}")
        return
    probe = carriable(ctx, list(files))
    ctx.check(not probe, f"create refused {why}, which the host carries ({probe}): {p.why()}")


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
