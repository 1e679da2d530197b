"""Namespace types: their clone flags, their /proc/PID/ns names, which to create or join."""
import os

from . import _shim as k
from .errors import PyrunError

NS_FLAGS = {
    "pid": k.CLONE_NEWPID, "network": k.CLONE_NEWNET, "mount": k.CLONE_NEWNS,
    "ipc": k.CLONE_NEWIPC, "uts": k.CLONE_NEWUTS, "user": k.CLONE_NEWUSER,
    "cgroup": k.CLONE_NEWCGROUP, "time": k.CLONE_NEWTIME,
}
# setns() order for namespaces joined by path: user first, so the others are
# joined with the capabilities it grants; mount last, since it changes what
# paths mean.
JOIN_ORDER = ("user", "ipc", "uts", "network", "cgroup", "mount")
# /proc/PID/ns names for the namespace types
NS_FILES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
            "user": "user", "cgroup": "cgroup", "time": "time"}


def clone_flags(namespaces: list[dict]) -> tuple[int, dict]:
    """(flags of namespaces to create, {type: path} of namespaces to join)."""
    flags, joins = 0, {}
    for ns in namespaces:
        kind = ns["type"]
        if kind not in NS_FLAGS:
            raise PyrunError(f"unknown namespace type {kind!r}")
        if ns.get("path"):
            joins[kind] = ns["path"]
        else:
            flags |= NS_FLAGS[kind]
    return flags, joins


def namespaces_to_join(pid: int) -> int:
    flags = 0
    for kind, name in NS_FILES.items():
        try:
            theirs = os.readlink(f"/proc/{pid}/ns/{name}")
        except FileNotFoundError:
            continue
        if theirs != os.readlink(f"/proc/self/ns/{name}"):
            flags |= NS_FLAGS[kind]
    return flags
