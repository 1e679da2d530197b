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


_primer = 0  # pid of the process prime() forked, until reaped


def prime() -> None:
    """Warm the kernel's cgroup migration lock before we need it (v1/hybrid hosts).

    The first task migration after a quiet spell waits for an RCU grace period
    (~10-15 ms here) to put cgroup_threadgroup_rwsem into writer mode; for a short
    while afterwards migrations take microseconds. A forked child moves itself into
    the cgroup it is already in, so that wait runs while create does its other work
    instead of on the init's critical path. A process, not a thread: clone3 must
    find this process single-threaded (a thread holding a libc lock at that moment
    would deadlock the init). Errors do not matter here."""
    global _primer
    if _primer or is_unified():
        return  # already on its way, or nothing to warm
    try:
        with open("/proc/self/cgroup") as f:
            own = {line.split(":", 2)[1]: line.split(":", 2)[2].strip() for line in f}
        for mountpoint, fstype, opts in _mounts():
            if fstype == "cgroup":
                key = ",".join(o for o in opts if o not in ("rw", "ro") and not o.startswith("release_agent"))
                if key in own:
                    procs = os.path.join(mountpoint, own[key].lstrip("/"), "cgroup.procs")
                    break
        else:
            return
        _primer = os.fork()
    except OSError:
        return
    if _primer == 0:
        try:
            fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
            os.write(fd, b"0")  # "0" means the writing task itself
        finally:
            os._exit(0)


def reap_primer() -> None:
    global _primer
    if _primer > 0:
        try:
            os.waitpid(_primer, 0)
        except ChildProcessError:
            pass
        _primer = 0


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
    if not os.path.isdir(top):
        return
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
