"""OOM notifications for `events`: an fd to poll, readable when the kernel OOM-kills.

v1: an eventfd registered through cgroup.event_control on memory.oom_control.
v2: memory.events itself, which the kernel signals (POLLPRI) on every change; the
oom/oom_kill counters say whether the change was an OOM.
"""
import os
import select


class V1Watch:
    def __init__(self, memory_dir: str | None):
        self.dir, self.fd = memory_dir, -1
        if memory_dir is None:
            return
        efd = os.eventfd(0, os.EFD_CLOEXEC)
        try:
            ofd = os.open(os.path.join(memory_dir, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
            try:
                with open(os.path.join(memory_dir, "cgroup.event_control"), "w") as f:
                    f.write(f"{efd} {ofd}")
            finally:
                os.close(ofd)
        except OSError:
            os.close(efd)
            return
        self.fd = efd

    events = select.POLLIN

    def fired(self) -> bool:
        """After poll said so: True for an OOM (the eventfd also fires when the cgroup goes)."""
        try:
            os.eventfd_read(self.fd)
        except OSError:
            return False
        return os.path.isdir(self.dir)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class V2Watch:
    events = select.POLLPRI | select.POLLERR

    def __init__(self, d: str):
        self.fd = -1
        try:
            self.fd = os.open(os.path.join(d, "memory.events"), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        self.last = self._counts()

    def _counts(self) -> tuple[int, int]:
        os.lseek(self.fd, 0, os.SEEK_SET)
        counts = {}
        for line in os.read(self.fd, 4096).decode().splitlines():
            k, _, v = line.partition(" ")
            counts[k] = int(v or 0)
        return counts.get("oom", 0), counts.get("oom_kill", 0)

    def fired(self) -> bool:
        try:
            now = self._counts()
        except OSError:
            return False
        grew = now[0] > self.last[0] or now[1] > self.last[1]
        self.last = now
        return grew

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
