"""cgroup v2: one unified hierarchy at /sys/fs/cgroup."""
import os

from . import rmdir_tree

ROOT = "/sys/fs/cgroup"


class V2Manager:
    version = 2

    def __init__(self, path: str, dir_: str | None = None):
        self.path = path
        self.dir = dir_ or os.path.join(ROOT, path.lstrip("/"))

    @property
    def hierarchies(self) -> dict:
        return {"": self.dir}

    def create(self) -> None:
        os.makedirs(self.dir, exist_ok=True)

    def clone_fd(self) -> int:
        """An fd for CLONE_INTO_CGROUP: the child is born inside its cgroup."""
        return os.open(self.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def join_fds(self) -> list[int]:
        return []  # clone_fd() places the child; nothing left to join

    def enter(self, pid: int) -> None:
        with open(os.path.join(self.dir, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def pids(self) -> list[int]:
        try:
            with open(os.path.join(self.dir, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except FileNotFoundError:
            return []

    def freeze(self, frozen: bool) -> None:
        with open(os.path.join(self.dir, "cgroup.freeze"), "w") as f:
            f.write("1" if frozen else "0")

    def frozen(self) -> bool:
        try:
            with open(os.path.join(self.dir, "cgroup.freeze")) as f:
                return f.read().strip() == "1"
        except OSError:
            return False

    def destroy(self) -> None:
        rmdir_tree(self.dir)
