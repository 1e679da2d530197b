"""One private mount namespace in which the host's cgroup2 mount is hidden.

crun 1.8 refuses this hybrid host ("cgroups in hybrid mode not supported") while
/sys/fs/cgroup/unified is mounted. Measured through a per-call wrapper (unshare +
sh + umount) its numbers carry the wrapper, which can only be subtracted as a
median measured apart. Here instead a forked child of the bench leaves the host's
mount namespace once, hides the cgroup2 mount there, and runs every candidate of a
benchmark (pyrun, crun, runc) itself: all see the same v1 cgroups and nothing but
the runtime is timed.

The umount must never reach the host: the child checks that it is in a mount
namespace of its own and that the mount is private there (a shared mount would
pass the umount on to its peer in the host's namespace) before it touches it.
"""
from __future__ import annotations

import ctypes
import os
import pickle
import signal
import traceback
from typing import Callable

from bench.runtimes import HYBRID_CGROUP2

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1


class NamespaceError(Exception):
    """The private namespace could not be made as required; nothing was unmounted."""


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _fail(what: str) -> None:
    err = ctypes.get_errno()
    raise NamespaceError(f"{what}: {os.strerror(err)}")


def mount_propagation(point: str) -> str | None:
    """'private' or 'shared:N …' of `point` in this namespace's mountinfo; None if not mounted."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == point:
                tags = fields[6:fields.index("-")]
                return " ".join(tags) or "private"
    return None


def enter() -> None:
    """Leave the host's mount namespace, make every mount private, unmount the cgroup2
    mount in the new namespace. Raises NamespaceError before the umount if any
    safeguard fails."""
    libc = _libc()
    host_ns = os.stat("/proc/self/ns/mnt").st_ino
    if libc.unshare(CLONE_NEWNS) != 0:
        _fail("unshare(CLONE_NEWNS)")
    if os.stat("/proc/self/ns/mnt").st_ino == host_ns:
        raise NamespaceError("still in the host's mount namespace after unshare")
    if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        _fail("mount --make-rprivate /")
    tags = mount_propagation(HYBRID_CGROUP2)
    if tags is None:
        return  # not a hybrid host: nothing to hide
    if tags != "private":
        raise NamespaceError(f"{HYBRID_CGROUP2} is still {tags} in the private namespace")
    if libc.umount2(HYBRID_CGROUP2.encode(), 0) != 0:
        _fail(f"umount {HYBRID_CGROUP2}")


def run(fn: Callable, *args):
    """fn(*args) in a forked child that has entered the private namespace (and is a
    subreaper, as the bench is); its result comes back pickled. The child dies with
    the bench (PDEATHSIG), so a killed bench leaves no measuring child behind."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's result is what the parent checks
        os.close(r)
        code = 0
        try:
            # SIGTERM then raises SystemExit here (the bench's handler), so fn's cleanup runs.
            _libc().prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            enter()
            from bench.measure import become_subreaper
            become_subreaper()
            out = ("ok", fn(*args))
        except BaseException as e:  # noqa: BLE001 - carried to the parent, which raises it
            out = ("error", f"{type(e).__name__}: {e}", traceback.format_exc())
            code = 1
        try:
            with os.fdopen(w, "wb") as f:
                f.write(pickle.dumps(out))
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    if not data:
        raise NamespaceError("the private-namespace child died without a result")
    out = pickle.loads(data)
    if out[0] != "ok":
        raise NamespaceError(f"in the private namespace: {out[1]}\n{out[2]}")
    return out[1]
