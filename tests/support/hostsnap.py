"""What a container must never change on the host, taken before a hostile case and compared after.

A sample of sysctls (the non-namespaced ones a config might reach, and the namespaced
ones whose host value must stay), the host's mount table, the top-level directories of
every cgroup hierarchy, and the processes left in a container's cgroup.

Other work may run on the machine meanwhile (a benchmark makes and removes its own
cgroups, an orchestrator test its podman mounts and network namespaces): cgroup
directories and processes are therefore counted only under the names the test gives
its containers (`prefixes`), which every container ID and every cgroupsPath the tests
write starts with; and mounts only where a runtime that lost its way could put or
take one: the system's own trees (WATCHED) and the test session's directory (`watch`,
where its bundles, rootfs and markers live). Sysctls are compared whole.
"""
import json
import os

SYSCTLS = ("vm.swappiness", "vm.overcommit_memory", "kernel.printk", "kernel.core_pattern",
           "kernel.hostname", "kernel.domainname", "kernel.shmmax", "kernel.msgmax", "kernel.pid_max",
           "net.ipv4.ip_forward", "net.core.somaxconn", "fs.mqueue.msg_max")
CGROUP_ROOT = "/sys/fs/cgroup"
# Mount points (and what is below them) a confused runtime would reach on the host.
WATCHED = ("/proc", "/sys", "/dev", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/root", "/home",
           "/var", "/boot", "/run/pyrun", "/tmp/pyrun")


def sysctls() -> dict[str, str]:
    out = {}
    for key in SYSCTLS:
        try:
            with open("/proc/sys/" + key.replace(".", "/")) as f:
                out[key] = f.read()
        except OSError as e:
            out[key] = f"unreadable: {e.strerror}"
    return out


def cgroup_tops() -> dict[str, list[str]]:
    """Each hierarchy's top-level directories: a container's cgroup (/<id>, or the first
    component of its cgroupsPath) is made there, and must be gone afterwards."""
    out = {}
    for hier in sorted(os.listdir(CGROUP_ROOT)):
        top = os.path.join(CGROUP_ROOT, hier)
        if os.path.isdir(top) and not os.path.islink(top):
            out[hier] = sorted(e.name for e in os.scandir(top) if e.is_dir(follow_symlinks=False))
    return out


def mounts(watch: tuple[str, ...] = ()) -> list[str]:
    """The host's mount table where it is watched (`/` itself, WATCHED, `watch`), mount IDs
    and all: a mount made, removed or re-made (a remount, a propagation change) shows."""
    tops = WATCHED + tuple(watch)
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mountpoint = line.split()[4]
            if mountpoint == "/" or any(mountpoint == t or mountpoint.startswith(t.rstrip("/") + "/") for t in tops):
                out.append(line.rstrip("\n"))
    return sorted(out)


def processes_in(prefixes: tuple[str, ...]) -> dict[int, str]:
    """pid → command line of each live process in a cgroup one of whose path components
    starts with a prefix (a container's, or one a hostile cgroupsPath named)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cgroup") as f:
                cgroup = f.read()
            with open(f"/proc/{name}/stat", "rb") as f:
                state = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # gone meanwhile
        if state[state.rfind(b")") + 2:][:1] in (b"Z", b"X"):
            continue  # dead, waiting for its parent: nothing runs
        parts = {p for line in cgroup.splitlines() for p in line.split(":", 2)[-1].split("/")}
        if any(p.startswith(prefixes) for p in parts):
            out[int(name)] = cmd
    return out


class HostSnapshot:
    """Taken at construction; differences() / assert_unchanged() say what changed since."""

    def __init__(self, prefixes: tuple[str, ...], watch: tuple[str, ...] = ()):
        self.prefixes = tuple(prefixes)
        self.watch = tuple(str(w) for w in watch)
        self.sysctls = sysctls()
        self.cgroups = cgroup_tops()
        self.mounts = mounts(self.watch)

    def _ours(self, names) -> set[str]:
        return {n for n in names if n.startswith(self.prefixes)}

    def differences(self) -> list[str]:
        out = []
        now = sysctls()
        out += [f"sysctl {k}: {self.sysctls[k]!r} -> {now[k]!r}" for k in SYSCTLS if now[k] != self.sysctls[k]]
        cg = cgroup_tops()
        for hier in sorted(set(cg) | set(self.cgroups)):
            old, new = self._ours(self.cgroups.get(hier, ())), self._ours(cg.get(hier, ()))
            if old != new:
                out.append(f"cgroup {hier}: made {sorted(new - old)}, removed {sorted(old - new)}")
        old, new = set(self.mounts), set(mounts(self.watch))
        out += [f"host mount made: {m}" for m in sorted(new - old)]
        out += [f"host mount gone: {m}" for m in sorted(old - new)]
        out += [f"process left: pid {pid} {cmd!r}" for pid, cmd in sorted(processes_in(self.prefixes).items())]
        return out

    def assert_unchanged(self, what: str = "") -> None:
        diff = self.differences()
        assert not diff, (what + ": " if what else "") + "; ".join(diff)


# -- orphans: what a killed or racing pyrun leaves running ----------------------------------

def reap() -> None:
    """Collect every dead child of this process (orphans reparented to us included). Only
    while no subprocess.Popen of ours is in flight: its child's status would be taken from it."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def children() -> dict[int, str]:
    """This process's live children: pid → command line."""
    me = str(os.getpid())
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                state = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = state[state.rfind(b")") + 2:].split()
        if fields[1].decode() == me and fields[0] not in (b"Z", b"X"):
            out[int(name)] = cmd
    return out


class Subreaper:
    """While entered, orphans of the processes this one starts are reparented to it (not
    to pid 1), so that an init a killed or racing pyrun left behind can be counted."""

    EXIT_WAIT = 10.0  # how long an orphan may take to notice its parent is gone and exit

    def __enter__(self):
        import prctl
        prctl.set_child_subreaper(True)
        return self

    def __exit__(self, *exc):
        import prctl
        prctl.set_child_subreaper(False)
        reap()

    def alive(self, keep=lambda pid: False) -> dict[int, str]:
        """Live children for which keep(pid) is false, once those on their way out have
        had EXIT_WAIT to go."""
        import time
        deadline = time.monotonic() + self.EXIT_WAIT
        while True:
            reap()
            left = {pid: cmd for pid, cmd in children().items() if not keep(pid)}
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.02)


# -- what `pyrun state` says, whatever happened --------------------------------------------

STATUSES = ("creating", "created", "running", "stopped", "paused")


def valid_state(stdout: str, cid: str) -> dict:
    """`pyrun state`'s document: the OCI state schema's, for `cid`, with a known status."""
    from specs.runtime import validate_state
    doc = json.loads(stdout)
    assert doc["id"] == cid and doc["status"] in STATUSES, doc
    if doc["status"] in ("created", "running", "paused"):
        assert doc["pid"] > 0, doc
    validate_state(doc)
    return doc
