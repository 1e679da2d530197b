"""`pyrun update`: runc's flags (or -r FILE|-, a linux.resources object) → the fields to change.

As in runc, a JSON document replaces the flags entirely; unset fields (0, "")
leave the kernel's value; memory flags take units ("64m", "1g"); setting only one
of cpu quota/period keeps the other at its recorded value; the device rules are
not updated.
"""
from .errors import PyrunError

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(s: str, flag: str) -> int:
    """Docker's RAMInBytes, as runc reads memory flags: "64m", "1.5GiB", "1048576"; -1 is
    unlimited."""
    if s == "-1":
        return -1
    import re
    m = re.fullmatch(r"(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?", s)
    if m is None:
        raise PyrunError(f"invalid value for {flag}: invalid size: {s!r}")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


def _uint(s: str, flag: str) -> int:
    if not s.isdigit():
        raise PyrunError(f"invalid value for {flag}: strconv.ParseUint: parsing {s!r}: invalid syntax")
    return int(s)


def _sint(s: str, flag: str) -> int:
    if not (s.isdigit() or (s[:1] == "-" and s[1:].isdigit())):
        raise PyrunError(f"invalid value for {flag}: strconv.ParseInt: parsing {s!r}: invalid syntax")
    return int(s)


def resources_from_flags(o: dict) -> dict:
    """The flags as a linux.resources object holding only what they set."""
    if o["l3_cache_schema"] or o["mem_bw_schema"]:
        raise PyrunError("Intel RDT is not supported by pyrun (--l3-cache-schema, --mem-bw-schema)")
    memory, cpu = {}, {}
    for flag, key in (("memory", "limit"), ("memory_swap", "swap"), ("memory_reservation", "reservation"),
                      ("kernel_memory", "kernel"), ("kernel_memory_tcp", "kernelTCP")):
        if o[flag]:
            memory[key] = ram_in_bytes(o[flag], "--" + flag.replace("_", "-"))
    for flag, key, parse in (("cpu_period", "period", _uint), ("cpu_rt_period", "realtimePeriod", _uint),
                             ("cpu_share", "shares", _uint), ("cpu_quota", "quota", _sint),
                             ("cpu_rt_runtime", "realtimeRuntime", _sint)):
        if o[flag]:
            cpu[key] = parse(o[flag], "--" + flag.replace("_", "-"))
    if o["cpuset_cpus"]:
        cpu["cpus"] = o["cpuset_cpus"]
    if o["cpuset_mems"]:
        cpu["mems"] = o["cpuset_mems"]
    r: dict = {}
    if memory:
        r["memory"] = memory
    if cpu:
        r["cpu"] = cpu
    if o["blkio_weight"]:
        r["blockIO"] = {"weight": o["blkio_weight"]}
    if o["pids_limit"]:
        r["pids"] = {"limit": o["pids_limit"]}
    return r


def resources_from_file(path: str) -> dict:
    import sys
    from specs import fastjson
    try:
        if path == "-":
            data = sys.stdin.buffer.read(1 << 20)
        else:
            import os
            import stat
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise PyrunError(f"--resources {path}: not a regular file")
                data = os.read(fd, 1 << 20)
            finally:
                os.close(fd)
    except OSError as e:
        raise PyrunError(f"--resources: open {path}: {e.strerror}") from None
    try:
        r = fastjson.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise PyrunError(f"--resources: {e}") from None
    if not isinstance(r, dict):
        raise PyrunError("--resources: expected a linux.resources object")
    r.pop("devices", None)  # runc's update leaves the device rules alone
    return r


def keep_cpu_pair(resources: dict, recorded: dict) -> dict:
    """Quota and period go together (cgroup v2 writes both in cpu.max): the one not given
    keeps its recorded value."""
    cpu = resources.get("cpu")
    if not cpu:
        return resources
    old = (recorded or {}).get("cpu") or {}
    if cpu.get("quota") and not cpu.get("period") and old.get("period"):
        cpu["period"] = old["period"]
    elif cpu.get("period") and not cpu.get("quota") and old.get("quota"):
        cpu["quota"] = old["quota"]
    return resources
