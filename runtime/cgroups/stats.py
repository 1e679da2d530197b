"""A container's usage, in the shape of runc's `events --stats` data (its types.Stats).

runc's JSON leaves out zero values where Go's omitempty does; so does this, field by
field, so that a caller parsing runc's output parses ours.
"""
import os

from .files import keyed, read

_MAX64 = 2 ** 64 - 1
_USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _int(d: str | None, name: str, default: int = 0) -> int:
    if d is None:
        return default
    try:
        s = read(d, name).strip()
    except OSError:
        return default
    if s == "max":
        return _MAX64
    try:
        return int(s)
    except ValueError:
        return default


def _ints(d: str | None, name: str) -> list[int]:
    try:
        return [int(x) for x in read(d, name).split()] if d else []
    except (OSError, ValueError):
        return []


def _omit(obj: dict, *keys: str) -> dict:
    """Go's omitempty for `keys`: dropped when zero or empty."""
    return {k: v for k, v in obj.items() if k not in keys or v}


def _list(spec: str) -> list[int]:
    """"0-2,5" → [0, 1, 2, 5] (cpuset lists)."""
    out = []
    for part in spec.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


def _cpuset(d: str | None) -> dict:
    def text(name):
        try:
            return read(d, name) if d else ""
        except OSError:
            return ""
    out = {"cpus": _list(text("cpuset.cpus")), "cpu_exclusive": _int(d, "cpuset.cpu_exclusive"),
           "mems": _list(text("cpuset.mems")), "mem_hardwall": _int(d, "cpuset.mem_hardwall"),
           "mem_exclusive": _int(d, "cpuset.mem_exclusive"),
           "memory_migrate": _int(d, "cpuset.memory_migrate"),
           "memory_spread_page": _int(d, "cpuset.memory_spread_page"),
           "memory_spread_slab": _int(d, "cpuset.memory_spread_slab"),
           "memory_pressure": _int(d, "cpuset.memory_pressure"),
           "sched_load_balance": _int(d, "cpuset.sched_load_balance"),
           "sched_relax_domain_level": _int(d, "cpuset.sched_relax_domain_level")}
    return _omit(out, "cpus", "mems")


def _entry(limit: int, usage: int, peak: int, failcnt: int) -> dict:
    return _omit({"limit": limit, "usage": usage, "max": peak, "failcnt": failcnt}, "usage", "max")


def _blkio_file(d: str, name: str) -> list[dict] | None:
    """"8:0 Read 4096" lines → entries; None when the file is missing or holds none."""
    try:
        text = read(d, name)
    except OSError:
        return None
    out = []
    for line in text.splitlines():
        f = line.replace(":", " ").split()
        if len(f) < 3:
            continue  # "Total N"
        op, value = (f[2], f[3]) if len(f) >= 4 else ("", f[2])
        out.append(_omit({"major": int(f[0]), "minor": int(f[1]), "op": op, "value": int(value)},
                         "major", "minor", "op", "value"))
    return out or None


# Which files hold the recursive I/O counts, best first, as runc looks for them.
_BLKIO_GROUPS = (
    (("blkio.bfq.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.bfq.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.io_service_bytes_recursive", "ioServiceBytesRecursive"),
     ("blkio.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.io_queued_recursive", "ioQueueRecursive"),
     ("blkio.io_service_time_recursive", "ioServiceTimeRecursive"),
     ("blkio.io_wait_time_recursive", "ioWaitTimeRecursive"),
     ("blkio.io_merged_recursive", "ioMergedRecursive"),
     ("blkio.time_recursive", "ioTimeRecursive"),
     ("blkio.sectors_recursive", "sectorsRecursive")),
    (("blkio.throttle.io_serviced_recursive", "ioServicedRecursive"),
     ("blkio.throttle.io_service_bytes_recursive", "ioServiceBytesRecursive")),
    (("blkio.throttle.io_serviced", "ioServicedRecursive"),
     ("blkio.throttle.io_service_bytes", "ioServiceBytesRecursive")),
)


def _blkio_v1(d: str | None) -> dict:
    if d is None:
        return {}
    for group in _BLKIO_GROUPS:
        first = _blkio_file(d, group[0][0])
        if first is None:
            continue
        out = {group[0][1]: first}
        for name, key in group[1:]:
            entries = _blkio_file(d, name)
            if entries:
                out[key] = entries
        return out
    return {}


def _page_sizes() -> list[str]:
    """"2MB", "1GB": the names hugetlb files use, from the kernel's hugepage sizes."""
    out = []
    try:
        names = sorted(os.listdir("/sys/kernel/mm/hugepages"), key=lambda n: int(n[10:-2]))
    except (OSError, ValueError):
        return out
    for n in names:
        kb = int(n[10:-2])  # hugepages-2048kB
        for unit, size in (("GB", 1 << 20), ("MB", 1 << 10), ("KB", 1)):
            if kb % size == 0:
                out.append(f"{kb // size}{unit}")
                break
    return out


def v1(mgr) -> dict:
    cpuacct, cpu = mgr.dir_for("cpuacct"), mgr.dir_for("cpu")
    percpu_user, percpu_kernel = [], []
    try:
        for line in read(cpuacct, "cpuacct.usage_all").splitlines()[1:]:
            _, user, system = line.split()
            percpu_user.append(int(user))
            percpu_kernel.append(int(system))
    except (OSError, TypeError, ValueError):
        pass
    ticks = keyed(cpuacct, "cpuacct.stat") if cpuacct else {}
    tick_ns = 10 ** 9 // _USER_HZ
    throttle = keyed(cpu, "cpu.stat") if cpu else {}
    mem = mgr.dir_for("memory")
    raw = keyed(mem, "memory.stat") if mem else {}

    def entry(kind):
        prefix = "memory." + kind
        if mem is None or not os.path.exists(os.path.join(mem, prefix + "limit_in_bytes")):
            return _entry(0, 0, 0, 0)
        return _entry(_int(mem, prefix + "limit_in_bytes"), _int(mem, prefix + "usage_in_bytes"),
                      _int(mem, prefix + "max_usage_in_bytes"), _int(mem, prefix + "failcnt"))
    pids_d = mgr.dir_for("pids")
    limit = _int(pids_d, "pids.max")
    hugetlb = {}
    h = mgr.dir_for("hugetlb")
    for size in _page_sizes() if h else ():
        hugetlb[size] = _omit({"usage": _int(h, f"hugetlb.{size}.usage_in_bytes"),
                               "max": _int(h, f"hugetlb.{size}.max_usage_in_bytes"),
                               "failcnt": _int(h, f"hugetlb.{size}.failcnt")}, "usage", "max")
    return {
        "cpu": {"usage": _omit({"total": _int(cpuacct, "cpuacct.usage"), "percpu": _ints(cpuacct, "cpuacct.usage_percpu"),
                                "percpu_kernel": percpu_kernel, "percpu_user": percpu_user,
                                "kernel": ticks.get("system", 0) * tick_ns, "user": ticks.get("user", 0) * tick_ns},
                               "total", "percpu", "percpu_kernel", "percpu_user"),
                "throttling": _throttling(throttle.get("nr_periods", 0), throttle.get("nr_throttled", 0),
                                          throttle.get("throttled_time", 0))},
        "cpuset": _cpuset(mgr.dir_for("cpuset")),
        "memory": _omit({"cache": raw.get("cache", 0), "usage": entry(""), "swap": entry("memsw."),
                         "kernel": entry("kmem."), "kernelTCP": entry("kmem.tcp."), "raw": raw}, "cache", "raw"),
        "pids": _omit({"current": _int(pids_d, "pids.current"), "limit": 0 if limit == _MAX64 else limit},
                      "current", "limit"),
        "blkio": _blkio_v1(mgr.dir_for("blkio")),
        "hugetlb": hugetlb,
        "intel_rdt": {},
        "network_interfaces": None,
    }


def _throttling(periods: int, throttled: int, time_ns: int) -> dict:
    return _omit({"periods": periods, "throttledPeriods": throttled, "throttledTime": time_ns},
                 "periods", "throttledPeriods", "throttledTime")


def _io_v2(d: str) -> dict:
    nbytes, nios = [], []
    try:
        text = read(d, "io.stat")
    except OSError:
        return {}
    for line in text.splitlines():
        dev, *pairs = line.split()
        major, _, minor = dev.partition(":")
        for pair in pairs:
            key, _, value = pair.partition("=")
            op = {"rbytes": "Read", "wbytes": "Write", "rios": "Read", "wios": "Write"}.get(key)
            if op is None:
                continue
            target = nbytes if key.endswith("bytes") else nios
            target.append(_omit({"major": int(major), "minor": int(minor), "op": op, "value": int(value)},
                                "major", "minor", "op", "value"))
    return _omit({"ioServiceBytesRecursive": nbytes, "ioServicedRecursive": nios},
                 "ioServiceBytesRecursive", "ioServicedRecursive")


def v2(d: str) -> dict:
    cpu = keyed(d, "cpu.stat")
    raw = keyed(d, "memory.stat")
    usage, limit = _int(d, "memory.current"), _int(d, "memory.max")
    swap_usage, swap_limit = _int(d, "memory.swap.current"), _int(d, "memory.swap.max")
    events = keyed(d, "memory.events")
    # v1 reports swap as memory+swap: so does runc on v2, for its callers
    swap_total = swap_limit if swap_limit == _MAX64 or limit == _MAX64 else swap_limit + limit
    pids_limit = _int(d, "pids.max")
    hugetlb = {}
    for size in _page_sizes():
        if os.path.exists(os.path.join(d, f"hugetlb.{size}.current")):
            hugetlb[size] = _omit({"usage": _int(d, f"hugetlb.{size}.current"),
                                   "failcnt": keyed(d, f"hugetlb.{size}.events").get("max", 0)}, "usage")
    return {
        "cpu": {"usage": _omit({"total": cpu.get("usage_usec", 0) * 1000, "kernel": cpu.get("system_usec", 0) * 1000,
                                "user": cpu.get("user_usec", 0) * 1000}, "total"),
                "throttling": _throttling(cpu.get("nr_periods", 0), cpu.get("nr_throttled", 0),
                                          cpu.get("throttled_usec", 0) * 1000)},
        "cpuset": _cpuset(None),
        "memory": _omit({"cache": raw.get("file", 0),
                         "usage": _entry(limit, usage, _int(d, "memory.peak"), events.get("max", 0)),
                         "swap": _entry(swap_total, swap_usage + usage, 0, 0),
                         "kernel": _entry(0, 0, 0, 0), "kernelTCP": _entry(0, 0, 0, 0), "raw": raw},
                        "cache", "raw"),
        "pids": _omit({"current": _int(d, "pids.current"), "limit": 0 if pids_limit == _MAX64 else pids_limit},
                      "current", "limit"),
        "blkio": _io_v2(d),
        "hugetlb": hugetlb,
        "intel_rdt": {},
        "network_interfaces": None,
    }
