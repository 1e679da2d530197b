"""cgroup v1 (and hybrid hosts): one directory per mounted hierarchy.

On a hybrid host the cgroup2 mount (/sys/fs/cgroup/unified) counts as one more
hierarchy, as runc treats it.
"""
import os

from . import _mounts, rmdir_tree


class V1Manager:
    version = 1

    def __init__(self, path: str, hierarchies: dict):
        self.path = path
        self._h = hierarchies  # hierarchy name ("cpu,cpuacct", "unified", …) → cgroup dir

    @classmethod
    def detect(cls, path: str) -> "V1Manager":
        h = {}
        for mountpoint, fstype, opts in _mounts():
            if fstype == "cgroup2":
                name = "unified"
            else:
                ctrls = [o for o in opts if o not in ("rw", "ro") and not o.startswith("release_agent")]
                name = ",".join(c.removeprefix("name=") for c in ctrls)
            if name and name not in h:
                h[name] = os.path.join(mountpoint, path.lstrip("/"))
        return cls(path, h)

    @property
    def hierarchies(self) -> dict:
        return dict(self._h)

    def dir_for(self, controller: str) -> str | None:
        for name, d in self._h.items():
            if controller in name.split(","):
                return d
        return None

    def create(self) -> None:
        for name, d in self._h.items():
            os.makedirs(d, exist_ok=True)
            if "cpuset" in name.split(","):
                _inherit_cpuset(d)

    def clone_fd(self) -> int:
        """A hybrid host's cgroup2 hierarchy takes the child at birth (CLONE_INTO_CGROUP)."""
        d = self._h.get("unified")
        return os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) if d else -1

    def join_fds(self) -> list[int]:
        """Each v1 hierarchy's `tasks` file, for the child's join_self()."""
        fds: list[int] = []
        try:
            for name, d in self._h.items():
                if name != "unified":
                    fds.append(os.open(os.path.join(d, "tasks"), os.O_WRONLY | os.O_CLOEXEC))
        except OSError:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def enter(self, pid: int) -> None:
        for d in self._h.values():
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def pids(self) -> list[int]:
        d = self.dir_for("pids") or self.dir_for("freezer") or next(iter(self._h.values()), None)
        if d is None:
            return []
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except FileNotFoundError:
            return []

    def freeze(self, frozen: bool) -> None:
        d = self.dir_for("freezer")
        if d is None:
            from ..errors import PyrunError
            raise PyrunError("the freezer cgroup controller is not mounted")
        with open(os.path.join(d, "freezer.state"), "w") as f:
            f.write("FROZEN" if frozen else "THAWED")
        if frozen:  # FREEZING settles asynchronously
            import time
            for _ in range(1000):
                with open(os.path.join(d, "freezer.state")) as f:
                    if f.read().strip() == "FROZEN":
                        return
                time.sleep(0.001)

    def frozen(self) -> bool:
        d = self.dir_for("freezer")
        try:
            with open(os.path.join(d, "freezer.state")) as f:
                return f.read().strip() != "THAWED"
        except (OSError, TypeError):
            return False

    def destroy(self) -> None:
        for d in self._h.values():
            rmdir_tree(d)


def _inherit_cpuset(d: str) -> None:
    """A new v1 cpuset starts empty and refuses tasks: copy cpus/mems down from the parent."""
    parent = os.path.dirname(d)
    if parent != d and os.path.exists(os.path.join(parent, "cpuset.cpus")):
        _inherit_cpuset(parent)
    for name in ("cpuset.cpus", "cpuset.mems"):
        p = os.path.join(d, name)
        with open(p) as f:
            if f.read().strip():
                continue
        with open(os.path.join(parent, name)) as f:
            value = f.read().strip()
        with open(p, "w") as f:
            f.write(value)
