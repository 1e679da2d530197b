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
