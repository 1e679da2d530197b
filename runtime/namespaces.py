"""Namespace types: their clone flags, their /proc/PID/ns names, which to create or join."""
import os

from . import _shim as k
from .errors import PyrunError, describe_oserror

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
        if kind in joins or flags & NS_FLAGS[kind]:
            raise PyrunError(f"linux.namespaces: {kind} is given twice")  # runc refuses it too
        if ns.get("path"):
            joins[kind] = ns["path"]
        else:
            flags |= NS_FLAGS[kind]
    return flags, joins


def made_after_user_join(flags: int, joins: dict) -> int | None:
    """With a user namespace joined at a path, the namespaces the config asks to be new are
    made only once the init is in it, so that it owns them and its root has capabilities
    over them (what sethostname, mounts and a procfs need; runc's nsexec joins first and
    unshares after). Those flags (maybe 0), or None without a joined user namespace:
    then clone3 makes them all at once."""
    if "user" not in joins:
        return None
    return flags & ~k.CLONE_NEWUSER


def join(kind: str, path: str) -> None:
    """setns into the `kind` namespace at `path`; one line naming it if that fails."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise PyrunError(describe_oserror(e, f"open {kind} namespace")) from None
    try:
        k.setns(fd, NS_FLAGS[kind])
    except OSError as e:
        raise PyrunError(describe_oserror(e, f"join {kind} namespace {path}")) from None
    finally:
        os.close(fd)


def write_time_offsets(offsets: dict) -> None:
    """Into this process's time_for_children namespace, before any process is in it."""
    lines = "".join(f"{clock} {o.get('secs', 0)} {o.get('nanosecs', 0)}\n" for clock, o in offsets.items())
    with open("/proc/self/timens_offsets", "w") as f:
        f.write(lines)


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


def userns_fd(uid_mappings: list[dict], gid_mappings: list[dict]) -> int:
    """An fd of a new user namespace with these mappings and no process left in it: what
    an idmapped mount (MOUNT_ATTR_IDMAP) takes. A forked child unshares it, we write its
    maps (with our privileges, so setgroups need not be denied), keep the fd, end the child."""
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(hold_w)  # or the read below would wait on ourselves
            os.close(ready_r)
            k.unshare(k.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(hold_r, 1)  # until the parent has the fd
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise PyrunError("make a user namespace for an idmapped mount: the helper died")
        for name, maps in (("uid_map", uid_mappings), ("gid_map", gid_mappings)):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write("".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps))
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise PyrunError(f"make a user namespace for an idmapped mount: {e.strerror}") from None
    finally:
        os.close(ready_r)
        os.close(hold_w)
        os.waitpid(pid, 0)
