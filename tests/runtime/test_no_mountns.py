"""Issue 17: a config without a mount namespace runs in the caller's, its mounts made inside the
rootfs and removed again at delete, delete --force and a failed create (runc leaves them).

Every test runs pyrun inside a private mount namespace made for it (a holder process under
`unshare -m --propagation private`, pyrun entered into it with nsenter), and reads that
namespace's mountinfo: the host's mount table is never touched, and whatever a failing test
leaves goes with the holder.
"""
import json
import os
import subprocess
import tempfile

import pytest

from tests.conftest import PYRUN
from tests.support.bundle import read_config, write_config


class Namespace:
    """A throwaway mount namespace, and pyrun run in it against a private --root."""

    def __init__(self, root: str):
        self.root = root
        self.holder = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sleep", "1000"])
        # unshare execs sleep once the namespace is made: wait until the pid is in another one
        while os.readlink(f"/proc/{self.holder.pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            pass

    def sh(self, *argv):
        return subprocess.run(["nsenter", "-t", str(self.holder.pid), "-m", "--", *argv],
                              capture_output=True, text=True, timeout=30)

    def __call__(self, *args):
        # Output to files: a detached init holds its stdio open long after pyrun exits.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            p = subprocess.run(["nsenter", "-t", str(self.holder.pid), "-m", "--", PYRUN, "--root", self.root,
                                *args], stdin=subprocess.DEVNULL, stdout=out, stderr=err, text=True, timeout=30)
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = out.read(), err.read()
        return p

    def ok(self, *args) -> str:
        p = self(*args)
        assert p.returncode == 0, f"pyrun {' '.join(args)}: {p.stderr}"
        return p.stdout

    def mounts_under(self, path: str) -> list[str]:
        """The namespace's mount points at or below `path`."""
        path = os.path.realpath(path)
        with open(f"/proc/{self.holder.pid}/mountinfo") as f:
            points = [line.split()[4] for line in f]
        return [p for p in points if p == path or p.startswith(path + "/")]

    def ids(self) -> list[str]:
        return os.listdir(self.root) if os.path.isdir(self.root) else []

    def close(self) -> None:
        for cid in self.ids():
            self("delete", "--force", cid)
        self.holder.kill()
        self.holder.wait()


@pytest.fixture
def ns(tmp_path, root_required):
    n = Namespace(str(tmp_path / "state"))
    yield n
    n.close()


def _no_mountns(b: str, mounts: list[dict], args=None) -> str:
    cfg = read_config(b)
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "mount"]
    for key in ("maskedPaths", "readonlyPaths"):
        cfg["linux"].pop(key, None)
    cfg["root"]["readonly"] = False
    cfg["mounts"] = mounts
    if args is not None:
        cfg["process"]["args"] = args
    write_config(b, cfg)
    return os.path.realpath(os.path.join(b, "rootfs"))


def _share(tmp_path) -> str:
    share = tmp_path / "share"
    share.mkdir(exist_ok=True)
    (share / "marker").write_text("from the host\n")
    return str(share)


PROC = {"destination": "/proc", "type": "proc", "source": "proc"}


def _bind(src: str, dest: str = "/data") -> dict:
    return {"destination": dest, "type": "bind", "source": src, "options": ["rbind"]}


def test_the_container_sees_its_mounts_and_delete_removes_them(ns, bundle, tmp_path):
    """The mounts are in the caller's namespace, inside the rootfs, and /dev (a tmpfs of the
    config's) gets its devices; the image's own /dev is not written, and what was mounted
    there before create (the rootfs itself a mount point, as Podman's overlay) stays."""
    share = _share(tmp_path)
    b = bundle(private_rootfs=True)
    file_bind = {"destination": "/etc/marker", "type": "bind", "source": share + "/marker", "options": ["bind", "ro"]}
    rootfs = _no_mountns(b, [PROC, _bind(share), file_bind,
                             {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}],
                         ["sh", "-c", "cat /etc/marker > /data/seen; test -c /dev/null && echo null >> /data/seen"])
    assert ns.sh("mount", "--bind", rootfs, rootfs).returncode == 0  # test set-up
    before = ns.mounts_under(rootfs)
    assert before == [rootfs]
    ns.ok("create", "-b", b, "nomnt")
    assert sorted(ns.mounts_under(rootfs)) == sorted([rootfs, rootfs + "/proc", rootfs + "/data", rootfs + "/etc/marker",
                                                      rootfs + "/dev"])
    pid = json.loads(ns.ok("state", "nomnt"))["pid"]
    assert os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink(f"/proc/{ns.holder.pid}/ns/mnt")
    ns.ok("start", "nomnt")
    _wait_stopped(ns, "nomnt")
    seen = open(os.path.join(share, "seen")).read().split("\n")
    assert seen[:2] == ["from the host", "null"], seen
    ns.ok("delete", "nomnt")
    assert ns.mounts_under(rootfs) == before
    assert os.listdir(os.path.join(rootfs, "dev")) == []


def test_run_in_the_foreground_removes_its_mounts(ns, bundle, tmp_path):
    b = bundle()
    rootfs = _no_mountns(b, [PROC, _bind(_share(tmp_path))], ["cat", "/data/marker"])
    assert ns.ok("run", "-b", b, "fg") == "from the host\n"
    assert ns.mounts_under(rootfs) == [] and ns.ids() == []


def _wait_stopped(ns, cid: str) -> None:
    for _ in range(1000):
        if json.loads(ns.ok("state", cid))["status"] == "stopped":
            return
        os.sched_yield()
    raise AssertionError(f"{cid} did not stop")


@pytest.mark.parametrize("status", ["created", "running", "stopped"])
def test_delete_force_removes_the_mounts_in_every_state(ns, bundle, tmp_path, status):
    b = bundle()
    rootfs = _no_mountns(b, [PROC, _bind(_share(tmp_path))], ["sleep", "100"] if status == "running" else ["true"])
    ns.ok("create", "-b", b, "force")
    assert len(ns.mounts_under(rootfs)) == 2
    if status != "created":
        ns.ok("start", "force")
    if status == "stopped":
        _wait_stopped(ns, "force")
    assert json.loads(ns.ok("state", "force"))["status"] == status
    ns.ok("delete", "--force", "force")
    assert ns.mounts_under(rootfs) == []
    assert not os.path.exists(ns.root + "/force")


def test_a_create_killed_half_way_leaves_what_delete_force_removes(ns, bundle, tmp_path):
    """SIGKILL with the mounts made and only the preliminary record written (a createRuntime
    hook kills its parent, create): delete --force finds them by that record's mount IDs."""
    b = bundle(["sleep", "100"])
    rootfs = _no_mountns(b, [PROC, _bind(_share(tmp_path))])
    cfg = read_config(b)
    cfg["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "kill -9 $PPID"]}]}
    write_config(b, cfg)
    p = ns("create", "-b", b, "killed")
    assert p.returncode != 0, p.stderr
    assert len(ns.mounts_under(rootfs)) == 2
    with open(f"{ns.root}/killed/state.json") as f:
        record = json.load(f)
    assert record["pid"] == 0 and record["caller_mounts"]["rootfs"] == rootfs
    ns.ok("delete", "--force", "killed")
    assert ns.mounts_under(rootfs) == []
    assert ns.ids() == []


def test_a_failed_create_leaves_no_mount(ns, bundle, tmp_path):
    b = bundle(["true"])
    rootfs = _no_mountns(b, [PROC, _bind(_share(tmp_path)), _bind(str(tmp_path / "missing"), "/more")])
    p = ns("create", "-b", b, "failed")
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "/more" in lines[0], p.stderr
    assert ns.mounts_under(rootfs) == []
    assert ns.ids() == []


def test_destinations_stay_inside_the_rootfs(ns, bundle, tmp_path):
    """An image symlink to a host path, and a destination through /proc/self/root once the
    container's /proc is mounted: both land inside the rootfs; a destination inside /proc
    is refused; and delete takes them all out."""
    host_target = tmp_path / "host-target"
    b = bundle(private_rootfs=True)
    rootfs = os.path.realpath(os.path.join(b, "rootfs"))
    os.symlink(str(host_target), os.path.join(rootfs, "evil"))
    share = _share(tmp_path)
    _no_mountns(b, [PROC, _bind(share, "/evil/probe"), _bind(share, "/proc/self/root/through-proc")])
    ns.ok("create", "-b", b, "confined")
    inside = rootfs + str(host_target)
    assert sorted(ns.mounts_under(rootfs)) == sorted([rootfs + "/proc", inside + "/probe", rootfs + "/through-proc"])
    assert not host_target.exists() and ns.mounts_under(str(tmp_path)) == ns.mounts_under(rootfs)
    ns.ok("delete", "--force", "confined")
    assert ns.mounts_under(str(tmp_path)) == []

    _no_mountns(b, [PROC, _bind(share, "/proc/self/attr")])
    p = ns("create", "-b", b, "into-proc")
    assert p.returncode != 0 and "inside /proc: refused" in p.stderr, p.stderr
    assert ns.mounts_under(str(tmp_path)) == [] and ns.ids() == []


def test_a_mount_made_after_create_under_the_rootfs_is_not_taken(ns, bundle, tmp_path):
    """delete unmounts the mounts create made (and what is mounted on them), not another
    mount that appeared under the rootfs since."""
    b = bundle()
    rootfs = _no_mountns(b, [PROC], ["sleep", "100"])
    ns.ok("create", "-b", b, "later")
    assert ns.sh("mount", "-t", "tmpfs", "other", rootfs + "/tmp").returncode == 0  # test set-up
    ns.ok("delete", "--force", "later")
    assert ns.mounts_under(rootfs) == [rootfs + "/tmp"]


@pytest.mark.parametrize("field, change", [
    ("root.readonly", lambda c: c["root"].__setitem__("readonly", True)),
    ("linux.maskedPaths", lambda c: c["linux"].__setitem__("maskedPaths", ["/proc/kcore"])),
    ("linux.readonlyPaths", lambda c: c["linux"].__setitem__("readonlyPaths", ["/proc/sys"])),
    ("linux.devices", lambda c: c["linux"].__setitem__("devices", [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}])),
    ("linux.rootfsPropagation", lambda c: c["linux"].__setitem__("rootfsPropagation", "rshared")),
    ("process.terminal", lambda c: c["process"].__setitem__("terminal", True)),
])
def test_what_would_change_the_image_or_the_callers_mounts_is_refused_by_name(ns, bundle, field, change):
    b = bundle()
    rootfs = _no_mountns(b, [PROC])
    cfg = read_config(b)
    change(cfg)
    write_config(b, cfg)
    p = ns("create", "-b", b, "refused")
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and len(lines) == 1 and f"{field} needs a mount namespace" in lines[0], p.stderr
    assert ns.mounts_under(rootfs) == [] and ns.ids() == []
