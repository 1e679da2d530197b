"""The runtime's own way into /proc: a procfs fd, verified, that no container path can shape.

The container's /proc is the image's and the config's to shape: a bind mount
over /proc/self/oom_score_adj or /proc/sys/..., or a symlink in the image, would
turn the runtime's own writes into writes to a host file (CVE-2025-52881 class).
So the init makes a procfs instance of its own (fsopen/fsmount, never attached
anywhere), checks that it is a procfs root, and reaches every file through it
without following symlinks or crossing mounts. Made once the init is in its pid
namespace, it shows only the container's processes: should a process of the
container get hold of the fd (ptrace of the init while it waits on exec.fifo),
it leads nowhere the container cannot go. Sysctl and /proc/<pid> files answer
for the namespaces of whoever opens them, so this is the container's view.
"""
import os

from . import _shim as k

PROC_ROOT_INO = 1
_RESOLVE = k.RESOLVE_BENEATH | k.RESOLVE_NO_XDEV | k.RESOLVE_NO_SYMLINKS | k.RESOLVE_NO_MAGICLINKS


class ProcFS:
    """An fd of a verified procfs root, and this process's directory in it."""

    def __init__(self, fd: int, what: str):
        try:
            if k.fstatfs_type(fd) != k.PROC_SUPER_MAGIC or os.fstat(fd).st_ino != PROC_ROOT_INO:
                raise OSError(22, "not the root of a procfs mount", what)
            self_ = os.readlink("self", dir_fd=fd)  # our pid as this procfs counts
            if not self_.isdigit():
                raise OSError(22, "unexpected /proc/self", what)
        except BaseException:
            os.close(fd)
            raise
        self.fd, self.self = fd, self_

    @classmethod
    def fresh(cls) -> "ProcFS":
        """A new procfs of this process's pid namespace; the one this mount namespace
        has at /proc where the kernel will not make one (it is still the host's tree)."""
        try:
            fd = k.fresh_fs("proc", k.MOUNT_ATTR_NOSUID | k.MOUNT_ATTR_NODEV | k.MOUNT_ATTR_NOEXEC)
        except OSError:
            return cls(os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC), "/proc")
        return cls(fd, "a new procfs")

    def open(self, rel: str, flags: int) -> int:
        """`rel` below /proc ("self/…" means this process), never through a link or a mount."""
        if rel == "self" or rel.startswith("self/"):
            rel = self.self + rel[4:]
        return k.openat2(self.fd, rel, flags | os.O_CLOEXEC, 0, _RESOLVE)

    def write(self, rel: str, data: bytes) -> None:
        fd = self.open(rel, os.O_WRONLY)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def reopen_fd(self, fd: int, flags: int) -> int:
        """Open what one of our own fds names (an O_PATH fd, say) with new flags."""
        dfd = self.open("self/fd", os.O_PATH | os.O_DIRECTORY)
        try:
            return os.open(str(fd), flags | os.O_CLOEXEC, dir_fd=dfd)  # our own fd table's link
        finally:
            os.close(dfd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
