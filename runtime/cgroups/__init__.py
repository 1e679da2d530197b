"""cgroups: one Manager interface over v1 (legacy and hybrid hosts) and v2 (unified).

The host's mode is detected, never assumed: /sys/fs/cgroup is a cgroup2 mount
with cgroup.controllers (unified), v1 hierarchies beside a cgroup2 mount
(hybrid), or v1 alone (legacy). On a hybrid host the cgroup2 mount counts as
one more hierarchy the container is placed in, as runc does; its limits are v1's.

    check(linux)            refuse what cannot be enforced, before anything is made
    manager(path)           the Manager for a container's cgroup (v1.py, v2.py)
    Manager.plan()          which directories create() will make: recorded first
    Manager.create(res)     make them and apply linux.resources before the init runs

Resource code: fields.py (which field needs which controller; also `features`),
v1_resources.py, v2_resources.py, devices.py (rules, v1 lists, v2 eBPF), stats.py.
"""
import os

MOUNTINFO = "/proc/self/mountinfo"
ROOT = "/sys/fs/cgroup"


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
    return os.path.exists(ROOT + "/cgroup.controllers")


def mode() -> str:
    """"unified", "hybrid" or "legacy"; "none" when no cgroup filesystem is mounted."""
    mounts = _mounts()
    if any(fstype == "cgroup2" and mp == ROOT for mp, fstype, _ in mounts) and is_unified():
        return "unified"
    v1 = any(fstype == "cgroup" for _, fstype, _ in mounts)
    v2 = any(fstype == "cgroup2" for _, fstype, _ in mounts)
    if v1:
        return "hybrid" if v2 else "legacy"
    return "unified" if v2 else "none"


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
    """The container's cgroup as configured: "/a/b" from each hierarchy's root, or
    "a/b" under the runtime's own cgroup (as runc resolves a relative path).

    Without cgroupsPath it is /<id>. The path is confined to the hierarchy: a ".."
    component is refused (it led outside /sys/fs/cgroup), so is the root itself and
    systemd's slice:prefix:name form, which only a systemd cgroup manager means."""
    from ..errors import ConfigError
    if not config_path:
        return "/" + cid
    if not isinstance(config_path, str) or "\0" in config_path:
        raise ConfigError("linux.cgroupsPath: expected a path")
    if not config_path.startswith("/") and config_path.count(":") == 2:
        raise ConfigError(f"linux.cgroupsPath {config_path!r}: systemd's slice:prefix:name form needs "
                          "the systemd cgroup manager, which pyrun does not have (use a path)")
    parts = [p for p in config_path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ConfigError(f"linux.cgroupsPath {config_path!r}: \"..\" is not allowed in a cgroup path")
    if not parts:
        raise ConfigError(f"linux.cgroupsPath {config_path!r}: a container needs a cgroup of its own, "
                          "not the root of the hierarchy")
    inner = "/".join(parts)
    return "/" + inner if config_path.startswith("/") else inner


def own_cgroups() -> dict[str, str]:
    """This process's cgroup in each hierarchy, by hierarchy name ("memory", "cpu,cpuacct",
    "systemd", and "unified" for the cgroup2 line)."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            name = ",".join(c.removeprefix("name=") for c in ctrls.split(",")) if ctrls else "unified"
            out[name] = path
    return out


def check(linux: dict) -> None:
    """Everything create refuses about cgroups, before anything is made: the path,
    and each linux.resources field the host cannot enforce (fields.py)."""
    cgroup_path(linux.get("cgroupsPath"), "x")
    resources = linux.get("resources")
    if resources:
        from . import fields
        fields.check(resources, host_controllers())


def host_controllers() -> tuple[int, set[str]]:
    """(version, controllers a container's cgroup can use here). On v1 and hybrid hosts
    these are the mounted v1 hierarchies' controllers: a hybrid host's cgroup2 only
    places the container (runc sets no limit there either)."""
    if is_unified():
        try:
            with open(ROOT + "/cgroup.controllers") as f:
                return 2, set(f.read().split()) | {"devices", "freezer"}
        except OSError:
            return 2, {"devices", "freezer"}
    ctrls = set()
    for _, fstype, opts in _mounts():
        if fstype == "cgroup":
            ctrls.update(o for o in opts if o not in ("rw", "ro") and "=" not in o)
    return 1, ctrls


def not_a_root(d: str) -> str:
    """A container's cgroup is never a hierarchy's root: acting on one would limit,
    freeze or kill every process on the host. cgroup_path refuses such a path; this
    guards every command that reads a directory back from a record."""
    if os.path.ismount(d) or os.path.realpath(d) in ("/", "/sys", "/sys/fs", ROOT):
        from ..errors import PyrunError
        raise PyrunError(f"refusing to use {d} as a container's cgroup: it is the root of a hierarchy")
    return d


def rmdir_tree(top: str) -> None:
    """cgroup dirs are removed leaf first with rmdir (their files cannot be unlinked)."""
    not_a_root(top)
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


def rmdir_made(made: list[str], leaves) -> None:
    """The parents this container made, deepest first, when nothing else uses them."""
    leaves = set(leaves)
    for d in reversed(made):
        if d in leaves:
            continue
        try:
            os.rmdir(d)
        except OSError:
            pass  # another container's cgroup lives there now, or it is gone already


def tree_pids(top: str) -> list[int]:
    """Every process in the cgroup at `top` and in the cgroups below it."""
    pids: list[int] = []
    not_a_root(top)
    for dirpath, _, _ in os.walk(top):
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                pids += [int(x) for x in f.read().split()]
        except FileNotFoundError:
            continue
    return pids


def manager(path: str, hierarchies: dict | None = None, made: list | None = None):
    """The Manager for `path`; `hierarchies` and `made` are what a previous call recorded."""
    if hierarchies is None:
        if is_unified():
            from .v2 import V2Manager
            return V2Manager.detect(path)
        from .v1 import V1Manager
        return V1Manager.detect(path)
    if "" in hierarchies and len(hierarchies) == 1:
        from .v2 import V2Manager
        return V2Manager(path, hierarchies[""], made or [])
    from .v1 import V1Manager
    return V1Manager(path, hierarchies, made or [])


def features() -> dict:
    """`features`' cgroup entry, from the same table the resource code uses."""
    from . import fields
    return fields.features()
