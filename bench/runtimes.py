"""The runtimes under comparison, each with a private --root, and crun's old wrapper.

crun 1.8 fails on a hybrid cgroup host (v1 controllers plus a cgroup2 mount at
/sys/fs/cgroup/unified). It works in a mount namespace in which that cgroup2 mount
is gone. The benchmarks that compare with crun run every candidate in one such
namespace (bench/samens.py: no wrapper timed). For the record, `run` on the host
also keeps the old method, in which each crun call goes through

    unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec "$@"' sh crun …

(unshare(1) makes the new namespace's mounts private, so the umount never reaches
the host's namespace), the pseudo-runtime WRAPPER, the same wrapper exec'ing
/bin/true, runs in the same rounds, and its median is subtracted from crun's.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

HYBRID_CGROUP2 = "/sys/fs/cgroup/unified"
PYRUN = os.path.join(os.path.dirname(sys.executable), "pyrun")
WRAPPER = "crun-wrapper"


_HYBRID_AT_START = os.path.ismount(HYBRID_CGROUP2)


def hybrid_host() -> bool:
    return _HYBRID_AT_START


def _wrap(argv: list[str]) -> list[str]:
    if not hybrid_host():
        return argv
    return ["unshare", "-m", "sh", "-c", f'umount {HYBRID_CGROUP2} && exec "$@"', "sh", *argv]


class Runtime:
    def __init__(self, name: str, argv0: list[str], root: str, wrapped: bool = False,
                 fake: bool = False):
        self.name, self.argv0, self.root = name, argv0, root
        self.wrapped = wrapped   # calls go through the crun wrapper
        self.fake = fake         # the wrapper alone: the "runtime" is /bin/true

    def cmd(self, *args: str) -> list[str]:
        argv = [*self.argv0, "--root", self.root, *args]
        return _wrap(argv) if self.wrapped else argv

    def has_exec(self) -> bool:
        """Whether `exec` is a command this runtime has (`exec --help` exits 0)."""
        if self.fake:
            return True
        p = subprocess.run(self.cmd("exec", "--help"), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return p.returncode == 0

    def force_delete_all(self) -> None:
        """delete --force every container left in this runtime's root (cleanup)."""
        if self.fake or not os.path.isdir(self.root):
            return
        for cid in os.listdir(self.root):
            subprocess.run(self.cmd("delete", "--force", cid), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


def available(workdir: str, wrapped_crun: bool = True) -> tuple[list[Runtime], dict[str, str]]:
    """The runtimes present here (pyrun first), each with its root under workdir; and
    name → why missing. crun is called through the wrapper (plus the wrapper
    pseudo-runtime) on a hybrid host unless wrapped_crun is False, for a caller that
    is already in a namespace without the cgroup2 mount."""
    found, missing = [], {}
    if os.access(PYRUN, os.X_OK):
        found.append(Runtime("pyrun", [PYRUN], os.path.join(workdir, "root-pyrun")))
    else:
        missing["pyrun"] = f"{PYRUN} not installed (make setup)"
    runc = shutil.which("runc")
    if runc:
        found.append(Runtime("runc", [runc], os.path.join(workdir, "root-runc")))
    else:
        missing["runc"] = "runc not installed"
    crun = shutil.which("crun")
    wrap = wrapped_crun and hybrid_host()
    if crun and (not wrap or shutil.which("unshare")):
        found.append(Runtime("crun", [crun], os.path.join(workdir, "root-crun"), wrapped=wrap))
        if wrap:
            found.append(Runtime(WRAPPER, ["/bin/true"], os.path.join(workdir, "root-wrapper"),
                                 wrapped=True, fake=True))
    else:
        missing["crun"] = "crun (or unshare for its wrapper) not installed"
    return found, missing


def host_cgroup2_still_mounted() -> bool:
    """The wrapper's umount must never leak into our namespace: checked after every run."""
    return not _HYBRID_AT_START or os.path.ismount(HYBRID_CGROUP2)
