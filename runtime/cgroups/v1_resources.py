"""linux.resources on cgroup v1 hierarchies, in runc's order and with its conversions.

Each function takes the container's directory in its controller's hierarchy and
the config's section; values were type-checked by fields.check. Zero/unset
fields are left alone, so `update` passes only what changes.
"""
from ..errors import PyrunError
from .fields import FIELDS, SECTION, is_set, set_fields
from .files import exists, read_int, write

_PAGE = 4096


def apply(mgr, r: dict, devices: bool = True) -> None:
    """Everything in `r` that is set, controller by controller; the device rules always
    (runc's built-in ones apply even when the config has none), unless `devices` is off."""
    needed = {FIELDS[f][0] for f in set_fields(r)} - {"devices"}
    if devices:
        needed.add("devices")
    for controller, fn in _ORDER.items():
        if controller not in needed:
            continue
        key = SECTION[controller]
        d = mgr.dir_for(controller)
        if d is None:
            raise PyrunError(f"linux.resources.{key}: the {controller} cgroup controller is not mounted")
        fn(d, r.get(key) or ([] if key == "devices" else {}))


def memory(d: str, m: dict) -> None:
    limit, swap = m.get("limit") or 0, m.get("swap") or 0
    if limit == -1 and swap == 0 and exists(d, "memory.memsw.limit_in_bytes"):
        swap = -1  # unlimited memory means unlimited memory+swap too
    # memory+swap may never be below memory: raise the one that grows first
    if limit and swap and (swap == -1 or read_int(d, "memory.limit_in_bytes") < swap):
        write(d, "memory.memsw.limit_in_bytes", swap, "memory.swap")
        _limit(d, limit)
    else:
        if limit:
            _limit(d, limit)
        if swap:
            write(d, "memory.memsw.limit_in_bytes", swap, "memory.swap")
    if m.get("kernel"):
        _kernel_limit(d, m["kernel"])
    if m.get("kernelTCP"):
        write(d, "memory.kmem.tcp.limit_in_bytes", m["kernelTCP"], "memory.kernelTCP")
    if m.get("reservation"):
        write(d, "memory.soft_limit_in_bytes", m["reservation"], "memory.reservation")
    if m.get("disableOOMKiller"):
        write(d, "memory.oom_control", 1, "memory.disableOOMKiller")
    if is_set("memory.swappiness", m.get("swappiness")):
        write(d, "memory.swappiness", m["swappiness"], "memory.swappiness")
    if m.get("useHierarchy"):
        write(d, "memory.use_hierarchy", 1, "memory.useHierarchy")


def _limit(d: str, limit: int) -> None:
    try:
        write(d, "memory.limit_in_bytes", limit, "memory.limit")
    except PyrunError:
        # EBUSY: the usage is above the new limit already; say so, as runc does
        usage, peak = read_int(d, "memory.usage_in_bytes"), read_int(d, "memory.max_usage_in_bytes")
        if usage > limit:
            raise PyrunError(f"linux.resources.memory.limit: unable to set memory limit to {limit} "
                             f"(current usage: {usage}, peak usage: {peak})") from None
        raise


def _kernel_limit(d: str, value: int) -> None:
    """Since Linux 5.16 the kernel accepts memory.kmem.limit_in_bytes and ignores it:
    read it back, and refuse a limit that did not take."""
    write(d, "memory.kmem.limit_in_bytes", value, "memory.kernel")
    got = read_int(d, "memory.kmem.limit_in_bytes")
    want = value // _PAGE * _PAGE
    if value != -1 and got != want:
        raise PyrunError("linux.resources.memory.kernel: this kernel does not enforce kernel memory "
                         "limits (memory.kmem.limit_in_bytes is ignored)")


def cpu(d: str, c: dict) -> None:
    shares = c.get("shares")
    if shares:
        write(d, "cpu.shares", shares, "cpu.shares")
        got = read_int(d, "cpu.shares")
        if got != shares:  # the kernel clamps instead of refusing
            bound = "maximum" if shares > got else "minimum"
            raise PyrunError(f"linux.resources.cpu.shares: the {bound} allowed cpu-shares is {got}")
    period, quota = c.get("period"), c.get("quota")
    retry_period = False
    if period:
        try:
            write(d, "cpu.cfs_period_us", period, "cpu.period")
        except PyrunError:
            # a shorter period can exceed the parent's quota until the quota follows
            if not quota:
                raise
            retry_period = True
    if quota:
        write(d, "cpu.cfs_quota_us", quota, "cpu.quota")
        if retry_period:
            write(d, "cpu.cfs_period_us", period, "cpu.period")
    if c.get("burst"):
        write(d, "cpu.cfs_burst_us", c["burst"], "cpu.burst")
    if c.get("realtimePeriod"):
        write(d, "cpu.rt_period_us", c["realtimePeriod"], "cpu.realtimePeriod")
    if c.get("realtimeRuntime"):
        write(d, "cpu.rt_runtime_us", c["realtimeRuntime"], "cpu.realtimeRuntime")
    if c.get("idle") is not None:
        write(d, "cpu.idle", c["idle"], "cpu.idle")


def cpuset(d: str, c: dict) -> None:
    for name in ("cpus", "mems"):
        if c.get(name):
            write(d, f"cpuset.{name}", c[name], f"cpu.{name}")


def pids(d: str, p: dict) -> None:
    limit = p.get("limit") or 0
    if limit:
        write(d, "pids.max", limit if limit > 0 else "max", "pids.limit")


def blkio(d: str, b: dict) -> None:
    bfq = not exists(d, "blkio.weight") and exists(d, "blkio.bfq.weight")
    prefix = "blkio.bfq." if bfq else "blkio."
    if b.get("weight"):
        if not bfq and not exists(d, "blkio.weight"):
            raise PyrunError("linux.resources.blockIO.weight: the host's I/O scheduler has no weights "
                             "(neither blkio.weight nor blkio.bfq.weight exists)")
        write(d, prefix + "weight", b["weight"], "blockIO.weight")
    if b.get("leafWeight"):
        write(d, "blkio.leaf_weight", b["leafWeight"], "blockIO.leafWeight")
    for i, wd in enumerate(b.get("weightDevice") or ()):
        dev = f"{wd['major']}:{wd['minor']}"
        if wd.get("weight"):
            write(d, prefix + "weight_device", f"{dev} {wd['weight']}", f"blockIO.weightDevice[{i}]")
        if wd.get("leafWeight"):
            write(d, "blkio.leaf_weight_device", f"{dev} {wd['leafWeight']}", f"blockIO.weightDevice[{i}]")
    for field, name in (("throttleReadBpsDevice", "read_bps_device"), ("throttleWriteBpsDevice", "write_bps_device"),
                        ("throttleReadIOPSDevice", "read_iops_device"),
                        ("throttleWriteIOPSDevice", "write_iops_device")):
        for i, td in enumerate(b.get(field) or ()):
            write(d, f"blkio.throttle.{name}", f"{td['major']}:{td['minor']} {td['rate']}",
                  f"blockIO.{field}[{i}]")


def hugetlb(d: str, limits: list, limit_file: str = "limit_in_bytes") -> None:
    """hugetlb.<size>.<limit_file> (v2 names it "max"), and the reservation limit
    hugetlb.<size>.rsvd.<limit_file> too where the kernel has it (as runc does)."""
    for i, h in enumerate(limits):
        prefix = f"hugetlb.{h['pageSize']}"
        if not exists(d, f"{prefix}.{limit_file}"):
            raise PyrunError(f"linux.resources.hugepageLimits[{i}]: page size {h['pageSize']} is not "
                             "supported by this host")
        write(d, f"{prefix}.{limit_file}", h["limit"], f"hugepageLimits[{i}]")
        if exists(d, f"{prefix}.rsvd.{limit_file}"):
            write(d, f"{prefix}.rsvd.{limit_file}", h["limit"], f"hugepageLimits[{i}]")


def net_cls(d: str, n: dict) -> None:
    if n.get("classID"):
        write(d, "net_cls.classid", n["classID"], "network.classID")


def net_prio(d: str, n: dict) -> None:
    for i, p in enumerate(n.get("priorities") or ()):
        write(d, "net_prio.ifpriomap", f"{p['name']} {p['priority']}", f"network.priorities[{i}]")


def rdma(d: str, r: dict) -> None:
    for dev, limits in r.items():
        line = rdma_line(dev, limits)
        if line:
            write(d, "rdma.max", line, f"rdma.{dev}")


def rdma_line(dev: str, limits: dict) -> str:
    parts = [f"{key}={limits[name]}" for name, key in (("hcaHandles", "hca_handle"), ("hcaObjects", "hca_object"))
             if limits.get(name) is not None]
    return f"{dev} {' '.join(parts)}" if parts else ""


def devices(d: str, rules: list) -> None:
    from . import devices as dev
    dev.apply_v1(d, rules)


# controller → what writes its files, in runc's order of subsystems (cpuset first, devices
# before the rest of what the init could use); fields.SECTION names each one's section.
_ORDER = {"cpuset": cpuset, "devices": devices, "memory": memory, "cpu": cpu, "pids": pids, "blkio": blkio,
          "hugetlb": hugetlb, "net_cls": net_cls, "net_prio": net_prio, "rdma": rdma}
