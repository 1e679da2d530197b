"""linux.resources on the unified hierarchy (cgroup v2), with runc's conversions.

OCI's fields are v1's: shares become cpu.weight, memory+swap becomes swap alone,
a blkio weight becomes an io.weight, the device rules an eBPF program. `unified`
is written last, so it can set what the typed fields do not reach.
"""
from ..errors import PyrunError
from .fields import FIELDS, SECTION, set_fields, swap_v2
from .files import exists, read_int, write
from . import v1_resources
from .v1_resources import cpuset, pids, rdma  # noqa: F401 - the same files on both versions


def apply(d: str, r: dict, devices: bool = True, update: bool = False) -> None:
    needed = {FIELDS[f][1] for f in set_fields(r)} - {"devices"}
    if devices:
        needed.add("devices")
    for controller, fn in _ORDER.items():
        if controller in needed:
            key = SECTION[controller]
            section = r.get(key) or ([] if key == "devices" else {})
            if key == "memory":
                fn(d, section, update)
            else:
                fn(d, section)


def _num(v: int) -> str:
    """0 is unset (""), -1 is "max"."""
    return "" if v == 0 else "max" if v == -1 else str(v)


def memory(d: str, m: dict, update: bool = False) -> None:
    limit, swap = m.get("limit") or 0, m.get("swap") or 0
    swap_max = swap_v2(limit, swap)
    value = _num(swap_max)
    if value == "" and swap > 0:
        value = "0"  # memory+swap equal to memory: no swap at all
    if value:
        try:
            write(d, "memory.swap.max", value, "memory.swap")
        except PyrunError:
            # without swap accounting there is no swap to allow or forbid
            if exists(d, "memory.swap.max") or value not in ("max", "0"):
                raise
    if limit:
        if update and m.get("checkBeforeUpdate") and limit != -1:
            usage = read_int(d, "memory.current")
            if usage > limit:
                raise PyrunError(f"linux.resources.memory.limit: unable to set memory limit to {limit} "
                                 f"(current usage: {usage})")
        write(d, "memory.max", _num(limit), "memory.limit")
    if m.get("reservation"):
        write(d, "memory.low", _num(m["reservation"]), "memory.reservation")


def cpu_weight(shares: int) -> int:
    """runc 1.1's mapping of cpu.shares [2, 262144] onto cpu.weight [1, 10000]."""
    return 1 + ((max(shares, 2) - 2) * 9999) // 262142


def cpu(d: str, c: dict) -> None:
    if c.get("idle") is not None:
        write(d, "cpu.idle", c["idle"], "cpu.idle")
    if c.get("shares"):
        write(d, "cpu.weight", cpu_weight(c["shares"]), "cpu.shares")
    quota, period = c.get("quota") or 0, c.get("period") or 0
    if quota or period:
        value = str(quota) if quota > 0 else "max"
        if period:
            value += f" {period}"
        write(d, "cpu.max", value, "cpu.quota" if quota else "cpu.period")
    if c.get("burst"):
        write(d, "cpu.max.burst", c["burst"], "cpu.burst")


def io_weight(weight: int) -> int:
    """runc's mapping of a blkio weight [10, 1000] onto io.weight [1, 10000]."""
    return 1 + (weight - 10) * 9999 // 990


def io(d: str, b: dict) -> None:
    bfq = exists(d, "io.bfq.weight")  # BFQ takes blkio's own weights
    if b.get("weight"):
        if bfq:
            write(d, "io.bfq.weight", b["weight"], "blockIO.weight")
        else:
            write(d, "io.weight", io_weight(b["weight"]), "blockIO.weight")
    for i, wd in enumerate(b.get("weightDevice") or ()):
        if wd.get("weight"):
            w = wd["weight"] if bfq else io_weight(wd["weight"])
            write(d, "io.bfq.weight" if bfq else "io.weight", f"{wd['major']}:{wd['minor']} {w}",
                  f"blockIO.weightDevice[{i}]")
    for field, key in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                       ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
        for i, td in enumerate(b.get(field) or ()):
            rate = td["rate"] or "max"
            write(d, "io.max", f"{td['major']}:{td['minor']} {key}={rate}", f"blockIO.{field}[{i}]")


def hugetlb(d: str, limits: list) -> None:
    v1_resources.hugetlb(d, limits, "max")  # the same files as v1, named hugetlb.<size>.max


def devices(d: str, rules: list) -> None:
    from . import devices as dev
    dev.apply_v2(d, rules)


def unified(d: str, u: dict) -> None:
    for key, value in u.items():
        try:
            write(d, key, value, f"unified[{key!r}]")
        except PyrunError as e:
            if not exists(d, key):
                ctrl = key.partition(".")[0]
                raise PyrunError(f"linux.resources.unified[{key!r}]: {key} does not exist: is the {ctrl} "
                                 "controller enabled for this cgroup?") from None
            raise e from None


# runc's order on cgroup v2; `unified` last so that it wins.
_ORDER = {"pids": pids, "memory": memory, "io": io, "cpu": cpu, "devices": devices, "cpuset": cpuset,
          "hugetlb": hugetlb, "rdma": rdma, "*": unified}
