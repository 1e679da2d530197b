"""Which linux.resources field needs which controller, on each cgroup version.

One table for three readers: check() refuses at create what the host cannot
enforce (before anything is made), the v1/v2 resource code names the field in
its errors, and `pyrun features` reports what is supported.

A field counts as set as runc counts it: 0, "", [], {} and false mean "leave the
kernel's value" (swappiness 0 and cpu.idle 0 are values; swappiness -1 is unset).
"""
from ..errors import ConfigError

# OCI field (under linux.resources) → (v1 controller, v2 controller). "-" (None): that
# version has no such limit, and the field is refused there (as runc refuses it, or
# where runc would silently drop it). A row: the two controllers, then their fields.
_TABLE = """
memory   memory   memory.limit memory.reservation memory.swap
memory   -        memory.kernel memory.kernelTCP memory.swappiness memory.disableOOMKiller
memory   memory   memory.useHierarchy memory.checkBeforeUpdate
cpu      cpu      cpu.shares cpu.quota cpu.period cpu.burst cpu.idle
cpu      -        cpu.realtimeRuntime cpu.realtimePeriod
cpuset   cpuset   cpu.cpus cpu.mems
pids     pids     pids.limit
blkio    io       blockIO.weight
blkio    -        blockIO.leafWeight
blkio    io       blockIO.weightDevice blockIO.throttleReadBpsDevice blockIO.throttleWriteBpsDevice
blkio    io       blockIO.throttleReadIOPSDevice blockIO.throttleWriteIOPSDevice
hugetlb  hugetlb  hugepageLimits
net_cls  -        network.classID
net_prio -        network.priorities
rdma     rdma     rdma
devices  devices  devices
-        *        unified
"""
FIELDS = {field: (None if v1 == "-" else v1, None if v2 == "-" else v2)
          for v1, v2, *fields in map(str.split, _TABLE.strip().splitlines()) for field in fields}
# controller → the linux.resources section its fields are in ("cpuset" → "cpu", "io" → "blockIO")
SECTION = {ctrl: field.partition(".")[0] for field, ctrls in FIELDS.items() for ctrl in ctrls if ctrl}

# Why a field has no v2 counterpart: the one line create prints.
_NOT_ON_V2 = {
    "memory.kernel": "kernel memory limits do not exist on cgroup v2",
    "memory.kernelTCP": "kernel TCP memory limits do not exist on cgroup v2",
    "memory.swappiness": "cgroup v2 has no per-cgroup swappiness",
    "memory.disableOOMKiller": "cgroup v2 cannot disable the OOM killer",
    "cpu.realtimeRuntime": "realtime scheduling limits are not supported on cgroup v2",
    "cpu.realtimePeriod": "realtime scheduling limits are not supported on cgroup v2",
    "blockIO.leafWeight": "cgroup v2 has no leaf weights",
    "network.classID": "net_cls is a cgroup v1 controller",
    "network.priorities": "net_prio is a cgroup v1 controller",
}
_UNSET = (None, 0, "", False)


def get(resources: dict, field: str):
    """The value of "memory.limit" etc. in linux.resources, or None."""
    top, _, sub = field.partition(".")
    v = resources.get(top)
    if sub:
        v = v.get(sub) if isinstance(v, dict) else None
    return v


def is_set(field: str, v) -> bool:
    if field == "memory.swappiness":
        return v is not None and v != -1 and v != 2 ** 64 - 1
    if field == "cpu.idle":
        return v is not None
    if field == "memory.useHierarchy":
        return v is not None
    if isinstance(v, (list, dict)):
        return bool(v)
    return v not in _UNSET


def set_fields(resources: dict) -> list[str]:
    return [f for f in FIELDS if is_set(f, get(resources, f))]


def integer(field: str, v, lo: int | None = None, hi: int | None = None) -> int:
    """A number from the (hostile) config, checked before it is formatted into a file."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"linux.resources.{field}: expected an integer, got {v!r}")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ConfigError(f"linux.resources.{field}: {v} is out of range")
    return v


def check(resources, host: tuple[int, set[str]]) -> None:
    """Refuse, one line naming the field, what this host cannot enforce."""
    if not isinstance(resources, dict):
        raise ConfigError("linux.resources: expected an object")
    version, controllers = host
    for field in set_fields(resources):
        v1, v2 = FIELDS[field]
        want = v1 if version == 1 else v2
        if want is None:
            if version == 1:
                raise ConfigError(f"linux.resources.{field}: cannot use unified on cgroup v1")
            raise ConfigError(f"linux.resources.{field}: {_NOT_ON_V2[field]}")
        if want != "*" and want not in controllers:
            raise ConfigError(f"linux.resources.{field}: the {want} cgroup controller is not "
                              f"available on this host")
    _check_values(resources, version, controllers)


def _check_values(r: dict, version: int, controllers: set[str]) -> None:
    mem = r.get("memory") or {}
    sw = mem.get("swappiness")
    if is_set("memory.swappiness", sw):
        integer("memory.swappiness", sw)
        if not 0 <= sw <= 100:
            raise ConfigError(f"linux.resources.memory.swappiness: invalid memory swappiness value: {sw} "
                              "(valid range is 0-100)")
    if mem.get("useHierarchy") is False:
        raise ConfigError("linux.resources.memory.useHierarchy: false is not possible: the kernel's "
                          "memory cgroups are always hierarchical")
    for name in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
        if mem.get(name) is not None:
            integer(f"memory.{name}", mem[name], -1)
    if version == 2:
        swap_v2(mem.get("limit") or 0, mem.get("swap") or 0)
    cpu = r.get("cpu") or {}
    for name in ("shares", "period", "realtimePeriod", "burst"):
        if cpu.get(name) is not None:
            integer(f"cpu.{name}", cpu[name], 0)
    for name in ("quota", "realtimeRuntime"):
        if cpu.get(name) is not None:
            integer(f"cpu.{name}", cpu[name], -1)
    if cpu.get("idle") is not None:
        integer("cpu.idle", cpu["idle"], 0, 1)
    for name in ("cpus", "mems"):
        if cpu.get(name) is not None and (not isinstance(cpu[name], str) or "\n" in cpu[name]):
            raise ConfigError(f"linux.resources.cpu.{name}: expected a list such as \"0-3,5\"")
    pids = r.get("pids") or {}
    if pids.get("limit") is not None:
        integer("pids.limit", pids["limit"])
    _check_block_io(r.get("blockIO") or {}, version)
    for i, h in enumerate(r.get("hugepageLimits") or ()):
        size = h.get("pageSize") if isinstance(h, dict) else None
        if not isinstance(size, str) or not size.isalnum():
            raise ConfigError(f"linux.resources.hugepageLimits[{i}].pageSize: expected a size such as \"2MB\"")
        integer(f"hugepageLimits[{i}].limit", h.get("limit"), 0)
    net = r.get("network") or {}
    if net.get("classID") is not None:
        integer("network.classID", net["classID"], 0, 2 ** 32 - 1)
    for i, p in enumerate(net.get("priorities") or ()):
        name = p.get("name") if isinstance(p, dict) else None
        if not isinstance(name, str) or not name or any(c in name for c in " \n/"):
            raise ConfigError(f"linux.resources.network.priorities[{i}].name: expected an interface name")
        integer(f"network.priorities[{i}].priority", p.get("priority"), 0, 2 ** 32 - 1)
    for dev, limits in (r.get("rdma") or {}).items():
        if not dev or any(c in dev for c in " \n") or not isinstance(limits, dict):
            raise ConfigError(f"linux.resources.rdma: bad device {dev!r}")
        for k in ("hcaHandles", "hcaObjects"):
            if limits.get(k) is not None:
                integer(f"rdma.{dev}.{k}", limits[k], 0, 2 ** 32 - 1)
    if r.get("devices"):
        from . import devices
        devices.rules_from_config(r["devices"])  # refuses malformed rules
    if r.get("unified"):
        check_unified(r["unified"], controllers)


def _check_block_io(b: dict, version: int) -> None:
    for name in ("weight", "leafWeight"):
        if b.get(name):
            integer(f"blockIO.{name}", b[name], 10, 1000)
    for i, d in enumerate(b.get("weightDevice") or ()):
        where = f"blockIO.weightDevice[{i}]"
        _device_numbers(where, d)
        if d.get("weight") is not None:
            integer(f"{where}.weight", d["weight"], 10, 1000)
        if d.get("leafWeight") is not None:
            if version == 2:
                raise ConfigError(f"linux.resources.{where}.leafWeight: cgroup v2 has no leaf weights")
            integer(f"{where}.leafWeight", d["leafWeight"], 10, 1000)
    for name in ("throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice",
                 "throttleWriteIOPSDevice"):
        for i, d in enumerate(b.get(name) or ()):
            _device_numbers(f"blockIO.{name}[{i}]", d)
            integer(f"blockIO.{name}[{i}].rate", d.get("rate"), 0)


def _device_numbers(where: str, d) -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"linux.resources.{where}: expected an object")
    integer(f"{where}.major", d.get("major"), 0, 2 ** 32 - 1)
    integer(f"{where}.minor", d.get("minor"), 0, 2 ** 32 - 1)


def swap_v2(limit: int, swap: int) -> int:
    """runc's conversion of OCI memory.swap (memory+swap) to memory.swap.max (swap alone);
    0 means leave it, -1 unlimited."""
    if limit == -1 and swap == 0:
        return -1
    if swap in (-1, 0):
        return swap
    if limit in (0, -1):
        raise ConfigError("linux.resources.memory.swap: unable to set swap limit without memory limit")
    if swap < limit:
        raise ConfigError("linux.resources.memory.swap: memory+swap limit should be >= memory limit")
    return swap - limit


# cgroup v2 interface files `unified` may not write: the runtime's own business
# (membership, delegation, freezing, killing), which a config must not reach.
_UNIFIED_FORBIDDEN = {"cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "cgroup.type",
                      "cgroup.freeze", "cgroup.kill"}


def check_unified(unified, controllers: set[str]) -> None:
    if not isinstance(unified, dict):
        raise ConfigError("linux.resources.unified: expected an object of strings")
    for key, value in unified.items():
        where = f"linux.resources.unified[{key!r}]"
        if "/" in key or "\0" in key:
            raise ConfigError(f"{where}: must be a file name (no slashes)")
        ctrl, dot, param = key.partition(".")
        if not dot or not ctrl or not param or key.startswith("."):
            raise ConfigError(f"{where}: must be in the form CONTROLLER.PARAMETER")
        if key in _UNIFIED_FORBIDDEN:
            raise ConfigError(f"{where}: {key} is managed by the runtime")
        if ctrl != "cgroup" and ctrl not in controllers:
            raise ConfigError(f"{where}: controller {ctrl!r} not available")
        if not isinstance(value, str) or "\0" in value:
            raise ConfigError(f"{where}: expected a string value")


def features() -> dict:
    return {
        "v1": any(v1 for v1, _ in FIELDS.values()),
        "v2": any(v2 for _, v2 in FIELDS.values()),
        "systemd": False,
        "systemdUser": False,
        "rdma": "rdma" in FIELDS,
    }
