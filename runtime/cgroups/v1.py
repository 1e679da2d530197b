"""cgroup v1 (and hybrid hosts): one directory per mounted hierarchy.

On a hybrid host the cgroup2 mount (/sys/fs/cgroup/unified) counts as one more
hierarchy the container is placed in, as runc treats it; limits are set in the
v1 hierarchies only (runc sets none there either).
"""
import posix

from .hierarchy import (dirname, exists, isdir, join, make_dirs, mounts, not_a_root, own_cgroups, rmdir_made,
                        rmdir_tree, tree_pids)

# super options of a v1 cgroup mount that are not controllers
_NOT_CONTROLLERS = {"rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode", "favordynmods"}


def hierarchy_name(fstype: str, opts: list[str]) -> str:
    """"cpu,cpuacct", "memory", "systemd" (for name=systemd), "unified" for cgroup2."""
    if fstype == "cgroup2":
        return "unified"
    ctrls = [o for o in opts if o not in _NOT_CONTROLLERS and ("=" not in o or o.startswith("name="))]
    return ",".join(c.removeprefix("name=") for c in ctrls)


class V1Manager:
    version = 1

    def __init__(self, path: str, hierarchies: dict, made: list | None = None):
        self.path = path
        self._h = hierarchies  # hierarchy name ("cpu,cpuacct", "unified", …) → cgroup dir
        self.made = list(made or [])  # the dirs create() makes (parents first): removed again
        self._planned = False

    @classmethod
    def detect(cls, path: str) -> "V1Manager":
        h = {}
        own = None
        for mountpoint, fstype, opts in mounts():
            name = hierarchy_name(fstype, opts)
            if not name or name in h:
                continue
            if path.startswith("/"):
                inner = path
            else:  # relative: under this process's own cgroup in that hierarchy, as runc
                if own is None:
                    own = own_cgroups()
                inner = own.get(name, "/").rstrip("/") + "/" + path
            h[name] = join(mountpoint, inner.lstrip("/"))
        return cls(path, h)

    @property
    def hierarchies(self) -> dict:
        return dict(self._h)

    def record(self) -> dict:
        """What the state record keeps: enough for `delete --force` to undo create()."""
        return {"path": self.path, "dirs": self.hierarchies, "made": list(self.made)}

    def dir_for(self, controller: str) -> str | None:
        for name, d in self._h.items():
            if controller in name.split(","):
                return d
        return None

    def plan(self) -> list[str]:
        """The directories create() will make, parents first: recorded before they exist."""
        made = []
        for d in self._h.values():
            not_a_root(d)
            missing = []
            while not isdir(d):
                missing.append(d)
                d = dirname(d)
            made += reversed(missing)
        self.made, self._planned = made, True
        return made

    def create(self, resources: dict | None = None, default_devices: bool = True) -> None:
        """Make the cgroup and apply `resources` (runc's default device rules at least,
        unless `default_devices` is off and the config has none)."""
        if not self._planned:
            self.plan()
        make_dirs(self.made)
        cpuset = self.dir_for("cpuset")
        if cpuset is not None:
            _inherit_cpuset(cpuset)
        from . import v1_resources
        resources = resources or {}
        v1_resources.apply(self, resources, devices=default_devices or bool(resources.get("devices")))

    def update(self, resources: dict) -> None:
        from . import v1_resources
        v1_resources.apply(self, resources, devices=False)

    def clone_fd(self) -> int:
        """A hybrid host's cgroup2 hierarchy takes the child at birth (CLONE_INTO_CGROUP)."""
        d = self._h.get("unified")
        return posix.open(d, posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC) if d else -1

    def join_fds(self) -> list[int]:
        """Each v1 hierarchy's `tasks` file, for the child's join_self()."""
        fds: list[int] = []
        try:
            for name, d in self._h.items():
                if name != "unified":
                    fds.append(posix.open(join(d, "tasks"), posix.O_WRONLY | posix.O_CLOEXEC))
        except OSError:
            for fd in fds:
                posix.close(fd)
            raise
        return fds

    def enter(self, pid: int) -> None:
        for d in self._h.values():
            with open(join(d, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def pids(self) -> list[int]:
        """Every process in the container's cgroups, sub-cgroups included, in any hierarchy
        (a process moved out of one hierarchy is still found in the others)."""
        seen: dict[int, None] = {}
        for d in self._h.values():
            for pid in tree_pids(d):
                seen[pid] = None
        return list(seen)

    def freeze(self, frozen: bool) -> None:
        d = self.dir_for("freezer")
        if d is None:
            from ..errors import PyrunError
            raise PyrunError("the freezer cgroup controller is not mounted")
        with open(join(d, "freezer.state"), "w") as f:
            f.write("FROZEN" if frozen else "THAWED")
        if frozen:  # FREEZING settles asynchronously
            import time
            for _ in range(1000):
                with open(join(d, "freezer.state")) as f:
                    if f.read().strip() == "FROZEN":
                        return
                time.sleep(0.001)

    def frozen(self) -> bool:
        d = self.dir_for("freezer")
        try:
            with open(join(d, "freezer.state")) as f:
                return f.read().strip() != "THAWED"
        except (OSError, TypeError):
            return False

    def can_freeze(self) -> bool:
        return self.dir_for("freezer") is not None

    def exists(self) -> bool:
        return any(isdir(d) for d in self._h.values())

    def destroy(self) -> None:
        for d in self._h.values():
            rmdir_tree(d)
        rmdir_made(self.made, self._h.values())

    def stats(self) -> dict:
        from . import stats
        return stats.v1(self)

    def oom_watch(self):
        from . import oom
        return oom.V1Watch(self.dir_for("memory"))


def _inherit_cpuset(d: str) -> None:
    """A new v1 cpuset starts empty and refuses tasks: copy cpus/mems down from the parent."""
    parent = dirname(d)
    if parent != d and exists(join(parent, "cpuset.cpus")):
        _inherit_cpuset(parent)
    for name in ("cpuset.cpus", "cpuset.mems"):
        p = join(d, name)
        with open(p) as f:
            if f.read().strip():
                continue
        with open(join(parent, name)) as f:
            value = f.read().strip()
        with open(p, "w") as f:
            f.write(value)
