"""cgroups: one Manager interface over v1 (legacy and hybrid hosts) and v2 (unified).

Detected from /proc/self/mountinfo, never assumed. This first cut places the
container in its cgroup, lists, signals, freezes and removes it; applying
`linux.resources` is the cgroups work that follows (resources.py).
"""
import os

MOUNTINFO = "/proc/self/mountinfo"


def _mounts() -> list[tuple[str, str, list[str]]]:
    """(mountpoint, fstype, super options) of every cgroup/cgroup2 mount."""
    out = []
    with open(MOUNTINFO) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = right.split()
            if not fields or fields[0] not in ("cgroup", "cgroup2"):
                continue
            mountpoint = left.split()[4].replace("\\040", " ")
            out.append((mountpoint, fields[0], fields[2].split(",") if len(fields) > 2 else []))
    return out


def is_unified() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def join_self(fds: list[int]) -> None:
    """Move the calling process into its cgroups: for a child right after clone3.

    `fds` are what Manager.join_fds() opened in the parent. On v1 each is a
    hierarchy's `tasks` file and the child writes "0" (itself) to it. Moving a
    whole process through cgroup.procs takes the kernel's threadgroup lock for
    writing, whose first use after a quiet spell waits an RCU grace period
    (10-20 ms here, measured); a single-threaded process moving itself as a
    thread needs no such lock (~0.02 ms a hierarchy). v1 checks the opener's
    credentials, so this works from inside a new user namespace too."""
    try:
        for fd in fds:
            os.write(fd, b"0")
    except OSError as e:
        from ..errors import PyrunError, describe_oserror
        raise PyrunError(describe_oserror(e, "join the container's cgroup")) from None
    finally:
        for fd in fds:
            os.close(fd)


def cgroup_path(config_path: str | None, cid: str) -> str:
    """The container's cgroup, relative to each hierarchy's root."""
    if not config_path:
        return "/" + cid
    if ":" in config_path and not config_path.startswith("/"):
        # systemd's slice:prefix:name form; without systemd we map it to a plain path.
        slice_, prefix, name = (config_path.split(":") + ["", ""])[:3]
        return "/" + "/".join(p for p in (slice_, f"{prefix}-{name}.scope" if prefix else name) if p)
    if config_path.startswith("/"):
        return os.path.normpath(config_path)
    return "/" + os.path.normpath(config_path)


def rmdir_tree(top: str) -> None:
    """cgroup dirs are removed leaf first with rmdir (their files cannot be unlinked)."""
    try:
        os.rmdir(top)  # the usual case: a leaf whose tasks have gone
        return
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno not in (16, 39):  # EBUSY, ENOTEMPTY: child cgroups (or tasks) left
            raise
    for dirpath, dirnames, _ in os.walk(top, topdown=False):
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            pass


def manager(path: str, hierarchies: dict | None = None):
    """The Manager for `path`; `hierarchies` is what a previous call recorded."""
    if hierarchies is None:
        if is_unified():
            from .v2 import V2Manager
            return V2Manager(path)
        from .v1 import V1Manager
        return V1Manager.detect(path)
    if "" in hierarchies and len(hierarchies) == 1:
        from .v2 import V2Manager
        return V2Manager(path, hierarchies[""])
    from .v1 import V1Manager
    return V1Manager(path, hierarchies)
