"""cgroup v2: one unified hierarchy at /sys/fs/cgroup."""
import posix

from .hierarchy import (ROOT, dirname, isdir, join, make_dirs, not_a_root, own_cgroups, rmdir_made, rmdir_tree,
                        tree_pids)


class V2Manager:
    version = 2

    def __init__(self, path: str, dir_: str | None = None, made: list | None = None):
        self.path = path
        self.dir = dir_ or join(ROOT, path.lstrip("/"))
        self.made = list(made or [])
        self._planned = False

    @classmethod
    def detect(cls, path: str) -> "V2Manager":
        if path.startswith("/"):
            return cls(path)
        # relative: beside this process's own cgroup, as runc (a cgroup with processes
        # in it cannot hand controllers down to a child)
        parent = dirname(own_cgroups().get("unified", "/"))
        return cls(path, join(ROOT, parent.lstrip("/"), path))

    @property
    def hierarchies(self) -> dict:
        return {"": self.dir}

    def record(self) -> dict:
        return {"path": self.path, "dirs": self.hierarchies, "made": list(self.made)}

    def plan(self) -> list[str]:
        missing = []
        d = not_a_root(self.dir)
        while not isdir(d):
            missing.append(d)
            d = dirname(d)
        self.made, self._planned = list(reversed(missing)), True
        return self.made

    def create(self, resources: dict | None = None, default_devices: bool = True) -> None:
        if not self._planned:
            self.plan()
        make_dirs(self.made)
        _enable_controllers(self.dir)
        from . import v2_resources
        resources = resources or {}
        v2_resources.apply(self.dir, resources, devices=default_devices or bool(resources.get("devices")))

    def update(self, resources: dict) -> None:
        from . import v2_resources
        v2_resources.apply(self.dir, resources, devices=False, update=True)

    def dir_for(self, controller: str) -> str:
        return self.dir

    def clone_fd(self) -> int:
        """An fd for CLONE_INTO_CGROUP: the child is born inside its cgroup."""
        return posix.open(self.dir, posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)

    def join_fds(self) -> list[int]:
        return []  # clone_fd() places the child; nothing left to join

    def enter(self, pid: int) -> None:
        with open(join(self.dir, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def pids(self) -> list[int]:
        return tree_pids(self.dir)

    def freeze(self, frozen: bool) -> None:
        with open(join(self.dir, "cgroup.freeze"), "w") as f:
            f.write("1" if frozen else "0")
        if frozen:  # the kernel reports "frozen 1" in cgroup.events once every task stopped
            import time
            for _ in range(1000):
                try:
                    with open(join(self.dir, "cgroup.events")) as f:
                        if "frozen 1" in f.read():
                            return
                except OSError:
                    return
                time.sleep(0.001)

    def frozen(self) -> bool:
        try:
            with open(join(self.dir, "cgroup.freeze")) as f:
                return f.read().strip() == "1"
        except OSError:
            return False

    def can_freeze(self) -> bool:
        return True

    def exists(self) -> bool:
        return isdir(self.dir)

    def destroy(self) -> None:
        rmdir_tree(self.dir)
        rmdir_made(self.made, [self.dir])

    def stats(self) -> dict:
        from . import stats
        return stats.v2(self.dir)

    def oom_watch(self):
        from . import oom
        return oom.V2Watch(self.dir)


def _enable_controllers(leaf: str) -> None:
    """Hand every available controller down each level above the container's cgroup, as
    runc does: a controller a parent does not enable has no files in its children.
    Failures are left for the resource that needs the controller to report."""
    parts = leaf[len(ROOT):].strip("/").split("/")  # leaf is below ROOT (not_a_root)
    d = ROOT
    for part in parts:
        try:
            with open(join(d, "cgroup.controllers")) as f:
                available = f.read().split()
            with open(join(d, "cgroup.subtree_control")) as f:
                enabled = set(f.read().split())
        except OSError:
            return
        missing = [c for c in available if c not in enabled]
        if missing:
            try:
                _write(d, " ".join("+" + c for c in missing))
            except OSError:
                for c in missing:  # one at a time: those that can be enabled are
                    try:
                        _write(d, "+" + c)
                    except OSError:
                        pass
        d = join(d, part)


def _write(d: str, value: str) -> None:
    fd = posix.open(join(d, "cgroup.subtree_control"), posix.O_WRONLY | posix.O_CLOEXEC)
    try:
        posix.write(fd, value.encode())
    finally:
        posix.close(fd)
