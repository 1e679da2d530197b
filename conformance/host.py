"""What the host sees, and how the suite runs programs on it.

The suite is a child subreaper, as the callers of a runtime are (conmon, containerd's shims):
a container's process outlives the `create` that made it and is reparented here, so it must be
reaped here, or it would linger as a zombie under a pid 1 that does not reap. Every program the
suite starts itself goes through `spawn`, which registers its pid under a lock, so that the
reaper never takes a child a caller is about to wait for.
"""
import ctypes
import os
import subprocess
import threading
import time

PR_SET_CHILD_SUBREAPER = 36
CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP2_SUPER_MAGIC = 0x63677270

_spawn_lock = threading.Lock()
_ours: set[int] = set()


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    threading.Thread(target=_reap_orphans, name="reaper", daemon=True).start()


def _children() -> list[int]:
    out = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                out.extend(int(p) for p in f.read().split())
        except OSError:
            pass
    return out


def _reap_orphans() -> None:
    while True:
        time.sleep(0.05)
        with _spawn_lock:
            for pid in _children():
                if pid not in _ours and proc_state(pid) == "Z":
                    try:
                        os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        pass


def spawn(argv, **kwargs) -> subprocess.Popen:
    """Popen, with the child's pid known to the reaper before it could exit."""
    with _spawn_lock:
        p = subprocess.Popen(argv, **kwargs)
        _ours.add(p.pid)
    return p


def finish(p: subprocess.Popen, timeout: float | None) -> int | None:
    """Wait for a spawned child; kill it past the timeout. Its status, or None if it was killed."""
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        rc = None
    _ours.discard(p.pid)
    return rc


def capture(argv, timeout: float = 10.0) -> str:
    """A short host command's stdout ('' if it fails or hangs), through spawn."""
    p = spawn(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    _ours.discard(p.pid)
    return out.decode(errors="replace") if p.returncode == 0 else ""


def proc_state(pid: int) -> str | None:
    """The one-letter state of /proc/<pid>/stat, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z", "X")


def wait_gone(pid: int, timeout: float) -> bool:
    """Until pid has exited (a zombie counts as exited); False on timeout."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        import select
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return not alive(pid)
            if select.select([fd], [], [], min(left, 0.2))[0] or not alive(pid):
                return True
    finally:
        os.close(fd)


def ns(pid: int | str, kind: str) -> str:
    """The namespace link of a process: 'net:[4026531840]'."""
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def status_field(pid: int | str, key: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k == key:
                return v.strip()
    raise KeyError(key)


def mounts_under(path: str) -> list[str]:
    """Mount points of this mount namespace at or below path (a leak, where there should be none)."""
    path = os.path.realpath(path).rstrip("/") + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if (point.rstrip("/") + "/").startswith(path):
                out.append(point)
    return out


def cgroup_mode() -> str:
    """'unified', 'hybrid' or 'legacy', as this mount namespace shows the cgroups."""
    mounts = _cgroup_mounts()
    if mounts.get(CGROUP_ROOT, ("",))[0] == "cgroup2":
        return "unified"
    return "hybrid" if mounts.get(CGROUP_ROOT + "/unified", ("",))[0] == "cgroup2" else "legacy"


def _cgroup_mounts() -> dict[str, tuple[str, list[str]]]:
    """mount point → (fstype, super options) for the cgroup mounts under /sys/fs/cgroup."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point = fields[4]
            if point == CGROUP_ROOT or point.startswith(CGROUP_ROOT + "/"):
                out[point] = (fields[sep + 1], fields[sep + 3].split(","))
    return out


def v1_mounts() -> dict[str, str]:
    """v1 controller (or name=X) → its mount point."""
    out = {}
    for point, (fstype, options) in _cgroup_mounts().items():
        if fstype == "cgroup":
            for o in options:
                if o not in ("rw", "ro") and "=" not in o or o.startswith("name="):
                    out[o] = point
    return out


def cgroup_dirs(pid: int) -> dict[str, str]:
    """controller → the host directory of pid's cgroup, from /proc/<pid>/cgroup ('' is v2's)."""
    mode, v1 = cgroup_mode(), v1_mounts()
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controllers == "":
                if mode != "legacy":
                    base = CGROUP_ROOT if mode == "unified" else CGROUP_ROOT + "/unified"
                    out[""] = base + path.rstrip("/")
                continue
            for c in controllers.split(","):
                if c in v1:
                    out[c] = v1[c] + path.rstrip("/")
    return out


def cgroup_hierarchy_dirs(path: str) -> list[str]:
    """The directories named path (a cgroupsPath) that exist in any hierarchy of the host."""
    roots = set(v1_mounts().values())
    mode = cgroup_mode()
    if mode != "legacy":
        roots.add(CGROUP_ROOT if mode == "unified" else CGROUP_ROOT + "/unified")
    return [d for d in (os.path.join(r, path.lstrip("/")) for r in sorted(roots)) if os.path.isdir(d)]
