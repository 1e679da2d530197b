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
import posix

from .hierarchy import dirname, isdir, join
from .hierarchy import host_controllers, is_unified, mounts  # noqa: F401 - the package's API too


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
            posix.write(fd, b"0")
    except OSError as e:
        from ..errors import PyrunError, describe_oserror
        raise PyrunError(describe_oserror(e, "join the container's cgroup")) from None
    finally:
        for fd in fds:
            posix.close(fd)


def cgroup_path(config_path: str | None, cid: str, relative: bool = False) -> str:
    """The container's cgroup as configured: "/a/b" from each hierarchy's root, or
    "a/b" under the runtime's own cgroup (as runc resolves a relative path).

    Without cgroupsPath it is /<id>; rootless (`relative`) it is <id> by the runtime's
    own cgroup, as runc places it, where a subtree delegated to the user takes it. The
    path is confined to the hierarchy: a ".." component is refused (it led outside
    /sys/fs/cgroup), so is the root itself and systemd's slice:prefix:name form, which
    only a systemd cgroup manager means."""
    from ..errors import ConfigError
    if not config_path:
        return cid if relative else "/" + cid
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


def check(linux: dict) -> None:
    """Everything create refuses about cgroups, before anything is made: the path,
    and each linux.resources field the host cannot enforce (fields.py)."""
    cgroup_path(linux.get("cgroupsPath"), "x")
    resources = linux.get("resources")
    if resources:
        from . import fields
        fields.check(resources, host_controllers())


def skip_unwritable(cg, resources: dict | None):
    """runc's rootless rule for a container without cgroupsPath: a hierarchy in which
    its cgroup can be neither made nor joined is left out, unless a resource needs it
    (refused, naming the field); None when no hierarchy is left."""
    from . import fields
    keep, why = {}, {}
    for name, d in cg.hierarchies.items():
        reason = _unusable(d)
        if reason:
            why[name] = reason
        else:
            keep[name] = d
    if not why:
        return cg
    for field in fields.set_fields(resources or {}):
        want = fields.FIELDS[field][cg.version - 1]
        for name in why:
            if want in name.split(",") or cg.version == 2:
                from ..errors import ConfigError
                raise ConfigError(f"linux.resources.{field}: cannot be applied rootless: uid {posix.geteuid()} "
                                  f"cannot write {why[name]} to make or join the container's cgroup (set "
                                  "linux.cgroupsPath to a cgroup delegated to the user, or leave the limit out)")
    if not keep:
        return None
    return manager(cg.path, keep)


def _unusable(d: str) -> str:
    """What this process would have to write, and may not, to make the cgroup directory
    `d` or move a task into it; "" if it can. cgroupfs is judged by owner and mode alone."""
    if isdir(d):
        target = join(d, "cgroup.procs")
    else:
        target = dirname(d)
        while not isdir(target):
            target = dirname(target)
    return "" if posix.access(target, posix.W_OK, effective_ids=True) else target


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


def destroy(cg) -> None:
    """Remove a container's cgroup, waiting out the last tasks' exit (EBUSY meanwhile)."""
    import time
    from ..errors import PyrunError, describe_oserror
    for _ in range(200):
        try:
            cg.destroy()
            return
        except OSError as e:
            if e.errno != 16:  # EBUSY: the last tasks are still exiting
                raise PyrunError(describe_oserror(e, "remove cgroup")) from None
            time.sleep(0.005)
    raise PyrunError(f"remove cgroup {cg.path}: still busy")


def sub_cgroup(cg, wanted: list[str]):
    """`exec --cgroup`: the container's cgroup with existing sub-cgroups in place of its own
    directories. Each item is runc's `[controller[,controller…]:]path`; a path is relative
    to the container's cgroup and stays inside it."""
    from ..errors import ConfigError
    per: dict[str, str] = {}
    for w in wanted:
        ctrls, _, sub = w.rpartition(":")
        parts = [p for p in sub.split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            raise ConfigError(f"exec --cgroup {w!r}: the sub-cgroup must be a path inside the container's cgroup")
        if ctrls and cg.version == 2:
            raise ConfigError(f"exec --cgroup {w!r}: cgroup v2 has one hierarchy: give no controller")
        for ctrl in (ctrls.split(",") if ctrls else [""]):
            per[ctrl] = "/".join(parts)
    dirs = {}
    for name, d in cg.hierarchies.items():
        sub = per.get("")
        for ctrl in name.split(","):
            sub = per.get(ctrl, sub)
        if sub:
            d = join(d, sub)
            if not isdir(d):
                raise ConfigError(f"exec --cgroup: {sub} does not exist in the container's cgroup ({d})")
        dirs[name] = d
    missing = set(per) - {""} - {c for name in cg.hierarchies for c in name.split(",")}
    if missing:
        raise ConfigError(f"exec --cgroup: no such controller: {', '.join(sorted(missing))}")
    return manager(cg.path, dirs)
