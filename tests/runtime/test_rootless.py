"""Rootless pyrun: `pyrun` run by a real unprivileged user, made for this module.

The module adds a user with useradd and subordinate id ranges with usermod (both
removed at the end), and runs `pyrun` as that user (setgroups, setgid, setuid in
preexec_fn) with HOME and XDG_RUNTIME_DIR in directories it makes. This host's
cgroups are v1 (hybrid) and root's: without a delegated cgroup a rootless container
has none, which is allowed only while no resource needs one.
"""
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile

import pytest

from specs.runtime import default_config
from tests.conftest import BIN, PYRUN
from tests.support.bundle import make_rootfs
from tests.support.checks import one_line_error

NAME = f"pyrunrl{os.getpid() % 100000}"
SUB_START, SUB_COUNT = 1_500_000_000, 65536  # far above useradd's own allocations
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CGROUP = "/sys/fs/cgroup"


class User:
    """The unprivileged user, the directories made for it, and `pyrun` as it."""

    def __init__(self, name: str, work: str):
        pw = pwd.getpwnam(name)
        self.name, self.uid, self.gid = name, pw.pw_uid, pw.pw_gid
        self.work = work  # 0755, root's: the user's own directories are inside
        self.home, self.xdg = self._own_dir("home", 0o700), ""
        self.rootfs = make_rootfs(os.path.join(self._own_dir("shared", 0o755), "rootfs"))
        chown_tree(self.rootfs, self.uid, self.gid)  # as `imagetool unpack --rootless` leaves it
        self.count = 0

    def _own_dir(self, name: str, mode: int) -> str:
        path = os.path.join(self.work, name)
        os.mkdir(path, mode)
        os.chown(path, self.uid, self.gid)
        return path

    @property
    def state_root(self) -> str:
        return os.path.join(self.xdg, "pyrun")

    def run(self, argv, *, xdg=True, env=None, cwd=None, join_cgroup=None, timeout=60):
        """argv as the user, stdout/stderr through files (a detached container keeps its
        stdio). `join_cgroup`: cgroup.procs files the process is moved into first."""
        full_env = {"PATH": HOST_PATH, "HOME": self.home, "USER": self.name, "LC_ALL": "C"}
        if xdg:
            full_env["XDG_RUNTIME_DIR"] = self.xdg
        full_env.update(env or {})

        def become():
            for procs in join_cgroup or ():
                with open(procs, "w") as f:
                    f.write("0")
            os.setgroups([])
            os.setgid(self.gid)
            os.setuid(self.uid)
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            p = subprocess.run(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True,
                               env=full_env, cwd=cwd or self.work, preexec_fn=become, timeout=timeout)
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = out.read(), err.read()
        return p

    def pyrun(self, *args, global_args=(), **kw):
        return self.run([PYRUN, *global_args, *args], **kw)

    def config(self, args=("true",)) -> dict:
        """`runc spec --rootless` as this user would write it, with `args` and no terminal."""
        c = default_config(rootless=True)
        c["process"]["terminal"] = False
        c["process"]["args"] = list(args)
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": self.uid, "size": 1}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": self.gid, "size": 1}]
        return c

    def sub_maps(self) -> list[dict]:
        """Mappings of the user's own id to 0 and its subordinate range from 1 on."""
        return [{"containerID": 0, "hostID": self.uid, "size": 1},
                {"containerID": 1, "hostID": SUB_START, "size": SUB_COUNT}]

    def bundle(self, config: dict) -> str:
        self.count += 1
        path = os.path.join(self.work, f"bundle{self.count}")
        os.mkdir(path, 0o755)
        os.symlink(self.rootfs, os.path.join(path, "rootfs"))
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(config, f)
        chown_tree(path, self.uid, self.gid)
        return path

    def ids(self) -> list[str]:
        try:
            return sorted(os.listdir(self.state_root))
        except FileNotFoundError:
            return []

    def clean(self) -> None:
        for cid in self.ids():
            self.pyrun("delete", "--force", cid)


def chown_tree(top: str, uid: int, gid: int) -> None:
    os.chown(top, uid, gid, follow_symlinks=False)
    for d, dirs, files in os.walk(top):
        for n in dirs + files:
            os.chown(os.path.join(d, n), uid, gid, follow_symlinks=False)


@pytest.fixture(scope="module")
def made_user():
    if os.getuid() != 0:
        pytest.skip("needs root: it adds a user (useradd) to run pyrun as")
    for tool in ("useradd", "usermod", "userdel"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: passwd)")
    subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                    "/usr/sbin/nologin", "--user-group", NAME], check=True, capture_output=True)
    work = tempfile.mkdtemp(prefix="pyrun-rootless-", dir="/tmp")
    try:
        os.chmod(work, 0o755)
        ranges = f"{SUB_START}-{SUB_START + SUB_COUNT - 1}"
        subprocess.run(["usermod", "--add-subuids", ranges, "--add-subgids", ranges, NAME],
                       check=True, capture_output=True)
        yield User(NAME, work)
    finally:
        subprocess.run(["userdel", NAME], capture_output=True)  # its subordinate ranges go too
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def user(made_user):
    """The user with an XDG_RUNTIME_DIR of this test's own."""
    made_user.count += 1
    made_user.xdg = made_user._own_dir(f"xdg{made_user.count}", 0o700)
    yield made_user
    made_user.clean()


def needs_uidmap():
    if shutil.which("newuidmap") is None or shutil.which("newgidmap") is None:
        pytest.skip("newuidmap/newgidmap are not installed (Debian: uidmap)")


# -- the state root ------------------------------------------------------------------------------

def test_state_root_is_under_xdg_runtime_dir(user):
    """As runc's $XDG_RUNTIME_DIR/runc: $XDG_RUNTIME_DIR/pyrun, 0700 and sticky, the user's."""
    b = user.bundle(user.config(["true"]))
    p = user.pyrun("run", "-b", b, "c1")
    assert p.returncode == 0, p.stderr
    st = os.stat(user.state_root)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.uid, 0o1700)
    p = user.pyrun("create", "-b", b, "c2")
    assert p.returncode == 0, p.stderr
    assert user.ids() == ["c2"]
    assert "c2" in user.pyrun("list", "-q").stdout.split()


def test_root_flag_wins_over_xdg_runtime_dir(user):
    own = os.path.join(user.home, "state")
    p = user.pyrun("create", "-b", user.bundle(user.config()), "c1", global_args=("--root", own))
    assert p.returncode == 0, p.stderr
    assert os.listdir(own) == ["c1"]
    assert not os.path.exists(user.state_root)
    assert user.pyrun("delete", "--force", "c1", global_args=("--root", own)).returncode == 0


def test_no_usable_state_root_is_one_line(user):
    """Neither $XDG_RUNTIME_DIR nor --root, and /run/pyrun is root's: say so, make nothing."""
    p = user.pyrun("create", "-b", user.bundle(user.config()), "c1", xdg=False)
    one_line_error(p, "XDG_RUNTIME_DIR", "--root")
    p = user.pyrun("list", env={"XDG_RUNTIME_DIR": os.path.join(user.work, "not-writable")})
    one_line_error(p, "XDG_RUNTIME_DIR", "writable")


# -- the user namespace --------------------------------------------------------------------------

def test_own_ids_mapped_to_root(user):
    """One-line maps of the user's own uid and gid, written by pyrun itself: setgroups is
    denied first (the kernel's condition for an unprivileged gid_map)."""
    b = user.bundle(user.config(["sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map "
                                             "/proc/self/setgroups"]))
    p = user.pyrun("run", "-b", b, "c1")
    assert p.returncode == 0, p.stderr
    out = p.stdout.split()
    assert out[:2] == ["0", "0"]
    assert out[2:8] == ["0", str(user.uid), "1", "0", str(user.gid), "1"]
    assert out[8] == "deny"


def test_init_is_not_dumpable_once_its_maps_are_written(user):
    """It is dumpable only until "go" (an unprivileged parent could not write its maps
    otherwise); waiting on exec.fifo it is not: its /proc files are root's again."""
    assert user.pyrun("create", "-b", user.bundle(user.config(["true"])), "c1").returncode == 0
    pid = json.loads(user.pyrun("state", "c1").stdout)["pid"]
    assert os.stat(f"/proc/{pid}/environ").st_uid == 0


def test_subordinate_ranges_through_newuidmap(user):
    """Wider maps go through newuidmap/newgidmap from the user's /etc/subuid and /etc/subgid
    ranges; setgroups stays allowed, so additional gids work."""
    needs_uidmap()
    c = user.config(["sh", "-c", "id; cat /proc/self/uid_map /proc/self/setgroups"])
    c["linux"]["uidMappings"] = user.sub_maps()
    c["linux"]["gidMappings"] = [dict(m, hostID=user.gid if m["containerID"] == 0 else m["hostID"])
                                 for m in user.sub_maps()]
    c["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 7]}
    p = user.pyrun("run", "-b", user.bundle(c), "c1")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "uid=1000 gid=1000 groups=5,7"
    assert [line.split() for line in lines[1:3]] == [["0", str(user.uid), "1"],
                                                     ["1", str(SUB_START), str(SUB_COUNT)]]
    assert lines[3] == "allow"


def test_range_not_granted_is_refused(user):
    needs_uidmap()
    c = user.config()
    c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": user.uid, "size": 1},
                                 {"containerID": 1, "hostID": SUB_START + SUB_COUNT, "size": 10}]
    p = user.pyrun("create", "-b", user.bundle(c), "c1")
    one_line_error(p, "linux.uidMappings", "newuidmap", "not allowed")
    assert user.ids() == []


def test_without_uidmap_a_wider_map_is_refused(user):
    """No newuidmap on PATH: only the user's own id can be mapped, and create says why."""
    c = user.config()
    c["linux"]["uidMappings"] = user.sub_maps()
    empty = os.path.join(user.work, "empty-path")
    os.makedirs(empty, exist_ok=True)
    p = user.pyrun("create", "-b", user.bundle(c), "c1", env={"PATH": empty})
    one_line_error(p, "linux.uidMappings", "newuidmap", "/etc/subuid")
    assert user.ids() == []


def test_additional_gids_refused_when_setgroups_is_denied(user):
    c = user.config()
    c["process"]["user"] = {"uid": 0, "gid": 0, "additionalGids": [0]}
    one_line_error(user.pyrun("create", "-b", user.bundle(c), "c1"), "process.user.additionalGids", "setgroups")
    assert user.ids() == []


def test_unmapped_mount_owner_refused(user):
    """runc's rule: uid=/gid= of a mount must be mapped (runc's non-rootless devpts gid=5)."""
    c = user.config()
    next(m for m in c["mounts"] if m["destination"] == "/dev/pts")["options"].append("gid=5")
    one_line_error(user.pyrun("create", "-b", user.bundle(c), "c1"), "/dev/pts", "gid=5", "not mapped")
    assert user.ids() == []


def test_a_user_namespace_is_required(user):
    c = user.config()
    c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "user"]
    del c["linux"]["uidMappings"], c["linux"]["gidMappings"]
    one_line_error(user.pyrun("create", "-b", user.bundle(c), "c1"), "user namespace", "spec --rootless")
    assert user.ids() == []


def test_sysfs_without_a_network_namespace_refused(user):
    """The kernel mounts sysfs only for a network namespace the user namespace owns; runc's
    rootless spec binds /sys instead."""
    c = user.config()
    c["mounts"] = [m if m["destination"] != "/sys" else
                   {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]}
                   for m in c["mounts"]]
    one_line_error(user.pyrun("create", "-b", user.bundle(c), "c1"), "sysfs", "network namespace")
    c["linux"]["namespaces"].append({"type": "network"})
    c["process"]["args"] = ["ls", "/sys/class/net"]
    p = user.pyrun("run", "-b", user.bundle(c), "c2")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["lo"]


def test_unreachable_bundle_is_named(user):
    hidden = tempfile.mkdtemp(prefix="pyrun-root-only-", dir="/tmp")  # 0700, root's
    try:
        b = os.path.join(hidden, "b")
        os.mkdir(b)
        p = user.pyrun("create", "-b", b, "c1")
        one_line_error(p, "Permission denied", b)
    finally:
        shutil.rmtree(hidden)


def test_oom_score_adj_raised_by_the_parent_lowering_refused(user):
    c = user.config(["cat", "/proc/self/oom_score_adj"])
    c["process"]["oomScoreAdj"] = 500
    p = user.pyrun("run", "-b", user.bundle(c), "c1")
    assert (p.returncode, p.stdout.strip()) == (0, "500"), p.stderr
    c["process"]["oomScoreAdj"] = -500
    one_line_error(user.pyrun("run", "-b", user.bundle(c), "c2"), "oomScoreAdj -500", "only raise")
    assert user.ids() == []


def test_exec_joins_the_user_namespace_first(user):
    """The container's pid namespace is the user namespace's: exec enters that one first,
    then the rest; its oomScoreAdj is set too, and setgroups left alone (denied)."""
    c = user.config(["sleep", "1000"])
    c["process"]["oomScoreAdj"] = 300
    assert user.pyrun("run", "-d", "-b", user.bundle(c), "c1").returncode == 0
    p = user.pyrun("exec", "c1", "sh", "-c", "id -u; cat /proc/self/oom_score_adj; echo $$")
    assert p.returncode == 0, p.stderr
    uid, adj, pid = p.stdout.split()
    assert (uid, adj) == ("0", "300")
    assert int(pid) > 1  # in the container's pid namespace
    p = user.pyrun("exec", "--additional-gids", "5", "c1", "true")
    one_line_error(p, "additionalGids", "setgroups")


# -- cgroups -------------------------------------------------------------------------------------

def test_no_cgroup_without_resources(user):
    """Nothing delegated: the container runs without a cgroup; ps and kill --all find its
    processes by its pid namespace, pause says there is no cgroup to freeze."""
    assert user.pyrun("run", "-d", "-b", user.bundle(user.config(["sleep", "1000"])), "c1").returncode == 0
    for _ in range(2):
        assert user.pyrun("exec", "-d", "c1", "sleep", "1000").returncode == 0
    state = json.loads(user.pyrun("state", "c1").stdout)
    assert state["status"] == "running"
    with open(f"/proc/{state['pid']}/cgroup") as f, open("/proc/self/cgroup") as g:
        assert f.read() == g.read()  # pyrun's own cgroups (the test's): none was made
    pids = _wait_for_pids(user, "c1", 3)
    assert state["pid"] in pids
    one_line_error(user.pyrun("pause", "c1"), "no cgroup")
    assert user.pyrun("kill", "--all", "c1", "TERM").returncode == 0
    # the exec'd sleeps die; the init is the namespace's pid 1, which ignores TERM unhandled
    assert _wait_for_pids(user, "c1", 1) == [state["pid"]]
    assert user.pyrun("delete", "--force", "c1").returncode == 0


def _wait_for_pids(user, cid: str, n: int) -> list[int]:
    for _ in range(500):
        pids = json.loads(user.pyrun("ps", "--format", "json", cid).stdout) or []
        if len(pids) == n:
            return pids
    raise AssertionError(f"ps never showed {n} processes: {pids}")


def test_resource_without_a_cgroup_is_refused(user):
    c = user.config()
    c["linux"]["resources"] = {"pids": {"limit": 50}}
    one_line_error(user.pyrun("create", "-b", user.bundle(c), "c1"), "linux.resources.pids.limit", "rootless")
    c["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    one_line_error(user.pyrun("create", "-b", user.bundle(c), "c2"), "linux.resources.devices", "rootless")
    assert user.ids() == []


def test_rootless_flag(user):
    """runc's --rootless: false makes a cgroup that cannot be made an error, true and auto
    skip it; anything else is refused."""
    b = user.bundle(user.config())
    one_line_error(user.pyrun("create", "-b", b, "c1", global_args=("--rootless=false",)),
                   "cgroup", "Permission denied")
    for value in ("true", "auto"):
        assert user.pyrun("run", "-b", b, "c1", global_args=(f"--rootless={value}",)).returncode == 0
    one_line_error(user.pyrun("run", "-b", b, "c1", global_args=("--rootless", "maybe")), "--rootless")
    assert user.ids() == []


def test_delegated_v1_cgroups_take_limits(user):
    """A cgroup delegated to the user (made and chowned by root in each hierarchy) takes the
    container and its limits: cgroupsPath given, or, without one, beside pyrun's own."""
    base = f"pyrunrl-deleg-{os.getpid()}"
    dirs = _delegate(base, user)
    try:
        c = user.config(["sh", "-c", "cat /proc/self/cgroup"])
        c["linux"]["cgroupsPath"] = f"/{base}/c1"
        c["linux"]["resources"] = {"pids": {"limit": 42}}
        p = user.pyrun("create", "-b", user.bundle(c), "c1", join_cgroup=[d + "/self/cgroup.procs" for d in dirs])
        assert p.returncode == 0, p.stderr
        pids_dir = next(d for d in dirs if d.startswith(CGROUP + "/pids/"))
        with open(f"{pids_dir}/c1/pids.max") as f:
            assert f.read().strip() == "42"
        assert user.pyrun("delete", "c1").returncode == 0
        assert not os.path.exists(f"{pids_dir}/c1")
        del c["linux"]["cgroupsPath"]  # relative to pyrun's own cgroup, as runc places it
        p = user.pyrun("create", "-b", user.bundle(c), "c2", join_cgroup=[d + "/self/cgroup.procs" for d in dirs])
        assert p.returncode == 0, p.stderr
        with open(f"{pids_dir}/self/c2/pids.max") as f:
            assert f.read().strip() == "42"
        assert user.pyrun("delete", "--force", "c2").returncode == 0
    finally:
        user.clean()
        for d in dirs:
            for sub in ("self/c2", "c1", "self", ""):
                try:
                    os.rmdir(os.path.join(d, sub))
                except OSError:
                    pass


def _delegate(base: str, user) -> list[str]:
    """`base` and `base/self` in every v1 hierarchy and the hybrid cgroup2, the user's."""
    dirs = []
    for name in sorted(os.listdir(CGROUP)):
        top = os.path.join(CGROUP, name)
        if os.path.islink(top) or not os.path.ismount(top):
            continue
        if not os.path.exists(os.path.join(top, "cgroup.procs")):
            continue
        d = os.path.join(top, base)
        for path in (d, d + "/self"):
            os.mkdir(path)
            if os.path.exists(path + "/cpuset.cpus"):  # a v1 cpuset starts empty
                for f in ("cpuset.cpus", "cpuset.mems"):
                    with open(os.path.join(os.path.dirname(path), f)) as src, open(os.path.join(path, f), "w") as dst:
                        dst.write(src.read())
            for entry in ("", "cgroup.procs", "tasks", "cgroup.subtree_control"):
                if os.path.exists(os.path.join(path, entry)):
                    os.chown(os.path.join(path, entry), user.uid, user.gid)
        dirs.append(d)
    return dirs


def _needs_unified():
    from runtime.cgroups import is_unified
    if not is_unified():
        pytest.skip("needs a cgroup v2 host: test_v2_in_the_guest runs this in the cgroup v2 guest")


def test_v2_delegated_subtree_takes_limits(user):
    """A subtree delegated as systemd delegates one (the directory and its cgroup.procs,
    cgroup.subtree_control and cgroup.threads the user's): pyrun, running in a leaf of it,
    makes the container's cgroup there, enables the controllers and applies the limits."""
    _needs_unified()
    base = os.path.join(CGROUP, f"pyrunrl-deleg-{os.getpid()}")
    os.mkdir(base)
    try:
        os.mkdir(base + "/self")
        for entry in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
            for d in (base, base + "/self"):
                os.chown(os.path.join(d, entry), user.uid, user.gid)
        c = user.config(["sleep", "1000"])
        c["linux"]["cgroupsPath"] = "/" + os.path.basename(base) + "/c1"
        c["linux"]["resources"] = {"pids": {"limit": 42}, "memory": {"limit": 64 << 20}}
        join = [base + "/self/cgroup.procs"]
        p = user.pyrun("create", "-b", user.bundle(c), "c1", join_cgroup=join)
        assert p.returncode == 0, p.stderr
        with open(base + "/c1/pids.max") as f, open(base + "/c1/memory.max") as g:
            assert (f.read().strip(), g.read().strip()) == ("42", str(64 << 20))
        pid = json.loads(user.pyrun("state", "c1").stdout)["pid"]
        with open(base + "/c1/cgroup.procs") as f:
            assert f.read().split() == [str(pid)]  # born there (CLONE_INTO_CGROUP)
        assert user.pyrun("start", "c1").returncode == 0
        assert user.pyrun("pause", "c1").returncode == 0  # the user's own cgroup.freeze
        assert json.loads(user.pyrun("state", "c1").stdout)["status"] == "paused"
        assert user.pyrun("resume", "c1").returncode == 0
        assert user.pyrun("delete", "--force", "c1").returncode == 0
        assert not os.path.exists(base + "/c1")
        del c["linux"]["cgroupsPath"]  # beside pyrun's own cgroup, as runc places it
        p = user.pyrun("create", "-b", user.bundle(c), "c2", join_cgroup=join)
        assert p.returncode == 0, p.stderr
        with open(base + "/c2/pids.max") as f:
            assert f.read().strip() == "42"
        assert user.pyrun("delete", "--force", "c2", join_cgroup=join).returncode == 0
    finally:
        user.clean()
        for d in ("c2", "c1", "self", ""):
            try:
                os.rmdir(os.path.join(base, d))
            except OSError:
                pass


def test_v2_no_cgroup_without_delegation(user):
    """Not delegated: no cgroup while no resource needs one; a limit is refused by name."""
    _needs_unified()
    assert user.pyrun("run", "-b", user.bundle(user.config()), "c1").returncode == 0
    c = user.config()
    c["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
    one_line_error(user.pyrun("create", "-b", user.bundle(c), "c2"), "linux.resources.memory.limit", "rootless")
    assert user.ids() == []


def test_v2_in_the_guest():
    """The two tests above on a unified host: Debian's kernel in the qemu guest."""
    import sys
    from tests.support import cgroup2vm
    if os.environ.get(cgroup2vm.GUEST_ENV):
        pytest.skip("already in the guest")
    reason = cgroup2vm.unavailable()
    if reason:
        pytest.skip(reason)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rc, out = cgroup2vm.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--color=no",
                             "tests/runtime/test_rootless.py", "-k", "v2_delegated or v2_no_cgroup"],
                            rw=repo, cwd=repo, timeout=900)
    tail = out[-6000:]
    assert rc == 0, tail
    summary = [line for line in out.splitlines() if " passed" in line]
    assert summary and "2 passed" in summary[-1] and "skipped" not in summary[-1], tail


# -- spec, and an image end to end ---------------------------------------------------------------

def test_spec_rootless_as_runc_writes_it(user):
    """`pyrun spec --rootless` as the user: runc's own `runc spec --rootless`, the user's ids in it."""
    if shutil.which("runc") is None:
        pytest.skip("runc is not installed (apt-get install runc)")
    for tool, d in ((PYRUN, "ours"), ("runc", "theirs")):
        out = os.path.join(user.work, f"spec-{d}")
        os.mkdir(out)
        os.chown(out, user.uid, user.gid)
        p = user.run([tool, "spec", "--rootless", "--bundle", out])
        assert p.returncode == 0, p.stderr
    with open(os.path.join(user.work, "spec-ours", "config.json"), "rb") as f:
        ours = f.read()
    with open(os.path.join(user.work, "spec-theirs", "config.json"), "rb") as f:
        theirs = f.read()
    assert json.loads(ours) == json.loads(theirs)
    assert ours == theirs  # byte for byte, as runc's Go encoder writes it
    assert json.loads(ours)["linux"]["uidMappings"] == [{"containerID": 0, "hostID": user.uid, "size": 1}]


def test_unpacked_image_runs_end_to_end(user):
    """`imagetool unpack --rootless` and `pyrun run`, both as the user, from an OCI layout."""
    from tests.support import images
    layout = os.path.join(user.work, "layout")
    images.write_layout(layout, {"latest": images.busybox_image(cmd=["sh", "-c", "echo hello from $(id -u)"])})
    chown_tree(layout, user.uid, user.gid)
    bundle = os.path.join(user.home, "bundle")
    p = user.run([os.path.join(BIN, "imagetool"), "unpack", "--rootless", f"{layout}:latest", bundle])
    assert p.returncode == 0, p.stderr
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    assert config["linux"]["uidMappings"] == [{"containerID": 0, "hostID": user.uid, "size": 1}]
    p = user.pyrun("run", "-b", bundle, "img")
    assert (p.returncode, p.stdout) == (0, "hello from 0\n"), p.stderr
