"""Issue 15's escapes, each tried as an attacker would: refused or confined, never the host.

Every test here failed on the tree before its fix (run with PYRUN_BINARY pointing at an
older build to see it); where runc is the oracle, the same attack is tried on it too.
"""
import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from tests.conftest import PYRUN
from tests.support.bundle import read_config, write_config
from tests.support.checks import one_line_error


def _edit(b, fn):
    cfg = read_config(b)
    fn(cfg)
    write_config(b, cfg)
    return b


@pytest.fixture
def host_marker(tmp_path_factory):
    """A file only the host has: if a container prints its text, it reached the host's /."""
    text = "host-only-" + uuid.uuid4().hex
    path = f"/tmp/pyrun-marker-{uuid.uuid4().hex}"
    with open(path, "w") as f:
        f.write(text + "\n")
    yield path, text
    os.unlink(path)


def _without_namespace(cfg, kind):
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != kind]


# -- cwd through an fd or a magic link (CVE-2024-21626 class) ------------------------------

@pytest.mark.parametrize("fd", range(3, 12))
def test_cwd_through_an_inherited_fd_never_reaches_the_host(pyrun, bundle, host_marker, fd):
    path, text = host_marker
    b = _edit(bundle(["sh", "-c", f"cat ../../../../../../..{path} 2>/dev/null; pwd"]),
              lambda c: c["process"].__setitem__("cwd", f"/proc/self/fd/{fd}/../../../../.."))
    p = pyrun("run", "-b", b, f"cwd{fd}")
    assert text not in p.stdout, f"fd {fd}: the container read a host file"
    if p.returncode == 0:
        assert p.stdout.strip().startswith("/"), p.stdout
    else:
        one_line_error(p, "cwd")


def test_cwd_through_a_directory_fd_the_caller_leaked(pyrun, bundle, host_marker, tmp_path):
    """A caller's stray fd (not --preserve-fds) is closed before the init touches a path."""
    path, text = host_marker
    leak = os.open("/", os.O_RDONLY | os.O_DIRECTORY)  # inheritable: not O_CLOEXEC
    os.set_inheritable(leak, True)
    try:
        b = _edit(bundle(["sh", "-c", f"cat .{path}; pwd"]),
                  lambda c: c["process"].__setitem__("cwd", f"/proc/self/fd/{leak}"))
        out = subprocess.run([PYRUN, "--root", pyrun.root, "run", "-b", b,
                              "leak"], capture_output=True, text=True, pass_fds=(leak,), timeout=30)
    finally:
        os.close(leak)
    assert text not in out.stdout
    one_line_error(out, "cwd")


def test_cwd_through_a_host_process_in_a_shared_pid_namespace(pyrun, bundle, host_marker):
    """Without a pid namespace, /proc/<pid>/cwd of a host process is a way to the host's /
    (with CAP_SYS_PTRACE, which lets the container follow that link)."""
    path, text = host_marker
    host = subprocess.Popen(["sleep", "100"], cwd="/")

    def cfg(c):
        _without_namespace(c, "pid")
        c["process"]["cwd"] = f"/proc/{host.pid}/cwd"
        for kind in ("bounding", "effective", "permitted"):
            c["process"]["capabilities"][kind].append("CAP_SYS_PTRACE")
    try:
        p = pyrun("run", "-b", _edit(bundle(["sh", "-c", f"cat .{path}; pwd"]), cfg), "hostpid")
    finally:
        host.kill()
        host.wait()
    assert text not in p.stdout
    one_line_error(p, "cwd")


@pytest.mark.parametrize("fd", range(3, 12))
def test_exec_cwd_through_an_inherited_fd_is_refused(pyrun, bundle, host_marker, fd):
    path, text = host_marker
    pyrun("run", "-d", "-b", bundle(["sleep", "100"]), "ex", check=True)
    p = pyrun("exec", "--cwd", f"/proc/self/fd/{fd}/../../../../..", "ex", "sh", "-c", f"cat .{path}; pwd")
    assert text not in p.stdout
    if p.returncode == 0:
        assert p.stdout.strip().startswith("/"), p.stdout
    else:
        one_line_error(p, "cwd")


def test_exec_cwd_through_the_inits_root_stays_inside(pyrun, bundle):
    pyrun("run", "-d", "-b", bundle(["sleep", "100"]), "ex", check=True)
    p = pyrun("exec", "--cwd", "/proc/1/root/../../..", "ex", "pwd")
    one_line_error(p, "cwd")  # a magic link: refused, though this one leads nowhere else


def test_a_plain_cwd_still_works(pyrun, bundle):
    b = _edit(bundle(["pwd"]), lambda c: c["process"].__setitem__("cwd", "/tmp/../etc"))
    assert pyrun.run_ok(b) == "/etc\n"


# -- /sys is the container's own sysfs, never the host's tree --------------------------------

@pytest.mark.parametrize("netns", ["host", "joined"])
def test_sysfs_is_mounted_afresh_without_a_network_namespace(pyrun, bundle, netns, tmp_path):
    probe = f"pyrun-escape-{uuid.uuid4().hex[:8]}"
    script = (f"mkdir /sys/fs/cgroup/pids/{probe} 2>/dev/null && echo made;"
              " awk '$5==\"/sys\" {for (i = 7; $i != \"-\"; i++); print $4, $(i+1)}' /proc/self/mountinfo;"
              " ls /sys/class/net")
    holder = None
    if netns == "joined":
        holder = subprocess.Popen(["unshare", "-n", "sleep", "100"])  # a test tool: a netns to join
        for _ in range(100):
            if os.readlink(f"/proc/{holder.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.02)

    def cfg(c):
        _without_namespace(c, "network")
        # No cgroup mount over /sys/fs/cgroup: what shows there is sysfs's own (empty) dir.
        c["mounts"] = [m for m in c["mounts"] if m["type"] != "cgroup"]
        for kind in ("bounding", "effective", "permitted"):  # as Podman's defaults have it
            c["process"]["capabilities"][kind].append("CAP_DAC_OVERRIDE")
        if holder:
            c["linux"]["namespaces"].append({"type": "network", "path": f"/proc/{holder.pid}/ns/net"})
    try:
        out = pyrun.run_ok(_edit(bundle(["sh", "-c", script]), cfg)).split()
    finally:
        if holder:
            holder.kill()
            holder.wait()
        made = os.path.exists(f"/sys/fs/cgroup/pids/{probe}")
        if made:
            os.rmdir(f"/sys/fs/cgroup/pids/{probe}")
    assert not made, "a host cgroup was made from inside"
    assert "made" not in out
    assert out[:2] == ["/", "sysfs"], out  # a sysfs of its own, not a bind of the host's /sys
    if netns == "joined":
        assert out[2:] == ["lo"], out  # the joined namespace's interfaces, not the host's
    else:
        assert sorted(out[2:]) == sorted(os.listdir("/sys/class/net"))


# -- sysctls: only those of a namespace the container owns -----------------------------------

@pytest.mark.parametrize("key,value,drop", [
    ("vm.swappiness", "1", None),
    ("kernel.printk", "1 1 1 1", None),
    ("net.ipv4.ip_forward", "1", "network"),
    ("kernel.shmmax", "4096", "ipc"),
    ("kernel.domainname", "x", "uts"),
])
def test_host_sysctls_are_refused(pyrun, bundle, key, value, drop):
    path = "/proc/sys/" + key.replace(".", "/")
    before = open(path).read()

    def cfg(c):
        if drop:
            _without_namespace(c, drop)
        c["linux"]["sysctl"] = {key: value}
    p = pyrun("run", "-b", _edit(bundle(["true"]), cfg), "sysctl")
    one_line_error(p, "sysctl", key)
    assert open(path).read() == before
    assert pyrun.ids() == []


def test_runc_refuses_the_same_host_sysctl(bundle, tmp_path, root_required):
    if not shutil.which("runc"):
        pytest.skip("runc is not installed (the oracle)")
    b = _edit(bundle(["true"], private_rootfs=True),
              lambda c: c["linux"].__setitem__("sysctl", {"vm.swappiness": "1"}))
    p = subprocess.run(["runc", "--root", str(tmp_path / "runc"), "run", "-b", b, "runc-sysctl"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "vm.swappiness" in p.stderr


def test_namespaced_sysctls_are_applied(pyrun, bundle):
    b = _edit(bundle(["sh", "-c", "cat /proc/sys/kernel/shmmni /proc/sys/net/ipv4/ip_forward"]),
              lambda c: c["linux"].__setitem__("sysctl", {"kernel.shmmni": "1234", "net.ipv4.ip_forward": "1"}))
    assert pyrun.run_ok(b).split() == ["1234", "1"]


# -- mount destinations on procfs, through image symlinks ------------------------------------

def test_bind_over_a_proc_file_is_refused(pyrun, bundle, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")

    def cfg(c):
        c["process"]["oomScoreAdj"] = 500
        c["mounts"].append({"destination": "/proc/self/oom_score_adj", "type": "bind",
                            "source": str(victim), "options": ["bind"]})
    p = pyrun("run", "-b", _edit(bundle(["true"]), cfg), "procbind")
    one_line_error(p, "/proc")
    assert victim.read_text() == "untouched\n"
    assert pyrun.ids() == []


def test_volume_through_an_image_symlink_into_proc_is_refused(pyrun, bundle, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    b = bundle(["true"], private_rootfs=True)
    os.symlink("/proc/sys/kernel", os.path.join(b, "rootfs", "data"))
    b = _edit(b, lambda c: c["mounts"].append(
        {"destination": "/data", "type": "bind", "source": str(vol), "options": ["rbind"]}))
    one_line_error(pyrun("run", "-b", b, "procvol"), "/proc")


def test_proc_mounted_elsewhere_is_still_procfs(pyrun, bundle, tmp_path):
    """A second procfs at /p: a bind onto /p/sys/... lands on procfs all the same."""
    vol = tmp_path / "vol"
    vol.mkdir()
    b = _edit(bundle(["true"]), lambda c: c["mounts"].extend([
        {"destination": "/tmp/p", "type": "proc", "source": "proc"},
        {"destination": "/tmp/p/sys/kernel", "type": "bind", "source": str(vol), "options": ["rbind"]}]))
    one_line_error(pyrun("run", "-b", b, "proc2"), "procfs")


def test_lxcfs_style_proc_files_may_be_covered(pyrun, bundle, tmp_path):
    fake = tmp_path / "meminfo"
    fake.write_text("MemTotal: 42 kB\n")
    b = _edit(bundle(["head", "-1", "/proc/meminfo"]), lambda c: c["mounts"].append(
        {"destination": "/proc/meminfo", "type": "bind", "source": str(fake), "options": ["bind", "ro"]}))
    assert pyrun.run_ok(b) == "MemTotal: 42 kB\n"


# -- read-only volumes stay read-only whatever the image's symlinks --------------------------

def test_ro_volume_through_image_symlinks_stays_read_only(pyrun, bundle, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    b = bundle(["sh", "-c", "touch /var/lib/app/x /dev/shm/x /var/app/x 2>/dev/null;"
                            " grep -c ' ro,' /proc/self/mountinfo >/dev/null; echo done"], private_rootfs=True)
    rootfs = os.path.join(b, "rootfs")
    os.makedirs(os.path.join(rootfs, "var"))
    os.symlink("/", os.path.join(rootfs, "var", "lib"))
    os.symlink("/dev/shm", os.path.join(rootfs, "app"))
    b = _edit(b, lambda c: c["mounts"].append(
        {"destination": "/var/lib/app", "type": "bind", "source": str(vol), "options": ["rbind", "ro"]}))
    assert pyrun.run_ok(b) == "done\n"
    assert os.listdir(vol) == [], "the container wrote into a read-only volume"


def test_rro_makes_every_submount_read_only(pyrun, bundle, tmp_path):
    vol = tmp_path / "vol"
    (vol / "sub").mkdir(parents=True)
    inner = tmp_path / "inner"
    inner.mkdir()
    subprocess.run(["mount", "--bind", str(inner), str(vol / "sub")], check=True)  # test set-up
    try:
        b = _edit(bundle(["sh", "-c", "touch /v/a 2>/dev/null || echo top-ro;"
                                      " touch /v/sub/b 2>/dev/null || echo sub-ro"]),
                  lambda c: c["mounts"].append({"destination": "/v", "type": "bind", "source": str(vol),
                                                "options": ["rbind", "rro"]}))
        assert pyrun.run_ok(b).split() == ["top-ro", "sub-ro"]
    finally:
        subprocess.run(["umount", str(vol / "sub")], check=True)
    assert os.listdir(inner) == []


# -- maskedPaths: only with the real null device (CVE-2025-31133 class) ----------------------

@pytest.mark.parametrize("fake", ["regular", "symlink"])
def test_masking_with_a_fake_dev_null_is_refused(pyrun, bundle, tmp_path, fake):
    b = bundle(["cat", "/proc/timer_list"], private_rootfs=True)
    dev = os.path.join(b, "rootfs", "imagedev")
    os.makedirs(dev)
    secret = os.path.join(b, "rootfs", "etc", "secret")
    with open(secret, "w") as f:
        f.write("not-null\n")
    if fake == "regular":
        with open(os.path.join(dev, "null"), "w") as f:
            f.write("not-null\n")
    else:
        os.symlink("/etc/secret", os.path.join(dev, "null"))

    def cfg(c):
        c["mounts"] = [m for m in c["mounts"] if not m["destination"].startswith("/dev")]
        c["mounts"].append({"destination": "/dev", "type": "bind", "source": dev, "options": ["rbind"]})
        c["linux"]["maskedPaths"] = ["/proc/timer_list"]
    p = pyrun("run", "-b", _edit(b, cfg), "fakenull")
    assert "not-null" not in p.stdout
    one_line_error(p, "/dev/null")


# -- atomic writes never follow a planted link -----------------------------------------------

def test_write_atomic_does_not_follow_a_planted_symlink(tmp_path):
    from runtime import state
    victim = tmp_path / "victim"
    victim.write_text("secret\n")
    os.chmod(victim, 0o600)
    target = tmp_path / "pid"
    for name in (f"{target}.{os.getpid()}.tmp", f".pid.{os.getpid()}.tmp"):
        os.symlink(victim, name if name.startswith("/") else tmp_path / name)
    state.write_atomic(str(target), b"1234", 0o644)
    assert victim.read_text() == "secret\n"
    assert target.read_text() == "1234" and not target.is_symlink()


def test_pid_file_replaces_a_symlink_instead_of_writing_through_it(pyrun, bundle, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("secret\n")
    pid_file = tmp_path / "pid"
    os.symlink(victim, pid_file)
    pyrun("create", "-b", bundle(["true"]), "--pid-file", str(pid_file), "pf", check=True)
    assert victim.read_text() == "secret\n"
    assert not pid_file.is_symlink() and pid_file.read_text().isdigit()


# -- bounded reads ------------------------------------------------------------------------------

def test_config_json_that_never_ends_is_refused(pyrun, bundle):
    b = bundle(["true"])
    os.unlink(os.path.join(b, "config.json"))
    os.symlink("/dev/zero", os.path.join(b, "config.json"))
    p = pyrun("create", "-b", b, "zero", timeout=20)
    one_line_error(p, "config.json", "regular file")
    assert pyrun.ids() == []


def test_config_json_fifo_does_not_hang(pyrun, bundle):
    b = bundle(["true"])
    os.unlink(os.path.join(b, "config.json"))
    os.mkfifo(os.path.join(b, "config.json"))
    one_line_error(pyrun("create", "-b", b, "fifo", timeout=20), "config.json")


def test_exec_process_file_that_never_ends_is_refused(pyrun, bundle):
    pyrun("run", "-d", "-b", bundle(["sleep", "100"]), "exz", check=True)
    one_line_error(pyrun("exec", "-p", "/dev/zero", "exz", timeout=20), "regular file")


# -- what the config asks is done, or refused with one line -------------------------------------

@pytest.mark.parametrize("change,needle", [
    (lambda c: c["linux"].__setitem__("netDevices", {"eth9": {}}), "linux.netDevices"),
    (lambda c: c["linux"].__setitem__("memoryPolicy", {"mode": "MPOL_BIND"}), "linux.memoryPolicy"),
    (lambda c: c["linux"].__setitem__("intelRdt", {"closID": "x"}), "linux.intelRdt"),
    (lambda c: c["linux"].__setitem__("mountLabel", "system_u:object_r:container_file_t:s0"), "linux.mountLabel"),
    (lambda c: c["linux"].__setitem__("personality", {"domain": "LINUX", "flags": ["x"]}), "personality.flags"),
    (lambda c: c["linux"]["namespaces"].append({"type": "network"}), "network is given twice"),
    (lambda c: c.__setitem__("vm", {"hypervisor": {"path": "/bin/true"}}), "vm"),
    (lambda c: c["mounts"].append({"destination": "/m", "type": "bind", "source": "/tmp",
                                   "options": ["rbind", "idmap"]}), "user namespace"),
    (lambda c: c["mounts"].append({"destination": "/m", "type": "bind", "source": "/tmp", "options": ["rbind"],
                                   "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}), "gidMappings"),
    (lambda c: c["mounts"].append({"destination": "/m", "type": "tmpfs", "source": "tmpfs",
                                   "options": ["idmap"]}), "bind mounts"),
    (lambda c: c["mounts"].append({"destination": "/m", "type": "bind", "source": "/tmp",
                                   "options": ["rbind", "size=1m"]}), "size=1m"),
    (lambda c: c["mounts"].append({"destination": "/m", "type": "bind", "source": "/tmp",
                                   "options": ["rbind", "sync"]}), "sync"),
])
def test_fields_not_done_are_refused(pyrun, bundle, change, needle):
    p = pyrun("create", "-b", _edit(bundle(["true"]), change), "refuse")
    one_line_error(p, needle)
    assert pyrun.ids() == []


def test_personality_linux32(pyrun, bundle):
    b = _edit(bundle(["uname", "-m"]), lambda c: c["linux"].__setitem__("personality", {"domain": "LINUX32"}))
    assert pyrun.run_ok(b).strip() in ("i686", "i386")


def test_default_umask_is_0022_whatever_the_callers(pyrun, bundle):
    b = bundle(["sh", "-c", "umask"])
    cfg = read_config(b)
    cfg["process"].get("user", {}).pop("umask", None)
    write_config(b, cfg)
    old = os.umask(0o077)
    try:
        out = pyrun.run_ok(b)
    finally:
        os.umask(old)
    assert out.strip() == "0022"


def test_container_id_starting_with_a_dot(pyrun, bundle):
    assert pyrun.run_ok(bundle(["echo", "ok"]), ".hidden") == "ok\n"


def test_joined_ipc_namespace_gets_its_own_mqueue(pyrun, bundle):
    pyrun("run", "-d", "-b", bundle(["sleep", "100"]), "ipcowner", check=True)
    pid = json.loads(pyrun("state", "ipcowner", check=True).stdout)["pid"]

    def cfg(c):
        _without_namespace(c, "ipc")
        c["linux"]["namespaces"].append({"type": "ipc", "path": f"/proc/{pid}/ns/ipc"})
    out = pyrun.run_ok(_edit(bundle(["sh", "-c", "grep ' /dev/mqueue ' /proc/self/mountinfo | cut -d' ' -f4,9"]),
                             cfg), "ipcjoin")
    assert out.split() == ["/", "mqueue"]


def test_features_lists_exactly_the_mount_options_the_parser_takes(pyrun):
    from runtime.errors import ConfigError
    from runtime.rootfs import Mount
    opts = json.loads(pyrun("features", check=True).stdout)["mountOptions"]
    assert {"rro", "rnosuid", "nosymfollow", "tmpcopyup", "rbind", "idmap", "ridmap"} <= set(opts)
    for opt in opts:
        accepted = []
        for kind in ({"type": "tmpfs", "source": "tmpfs"}, {"type": "bind", "source": "/tmp"}):
            try:
                Mount({"destination": "/x", **kind, "options": [opt]})
                accepted.append(kind["type"])
            except ConfigError:
                pass
        assert accepted, f"features lists {opt!r}, which every mount refuses"


def test_a_nul_byte_anywhere_is_refused_by_name(pyrun, bundle, tmp_path):
    """The kernel stops at a NUL: "/x\\0y" would be /x. Refused before anything is made."""
    for change, needle in ((lambda c: c["process"].__setitem__("args", ["echo", "a\0b"]), "process.args[1]"),
                           (lambda c: c["mounts"].append({"destination": "/x\0y", "type": "tmpfs",
                                                          "source": "tmpfs"}), "destination"),
                           (lambda c: c["process"].__setitem__("cwd", "/tmp\0/etc"), "process.cwd")):
        p = pyrun("create", "-b", _edit(bundle(["true"]), change), "nul")
        one_line_error(p, needle, "NUL")
        assert pyrun.ids() == []
    pyrun("run", "-d", "-b", bundle(["sleep", "100"]), "nulx", check=True)
    spec = tmp_path / "p.json"
    spec.write_text(json.dumps({"args": ["echo", "a\0b"], "cwd": "/"}))
    one_line_error(pyrun("exec", "-p", str(spec), "nulx"), "NUL")


def test_an_argument_execve_cannot_take_is_refused_at_create(pyrun, bundle):
    p = pyrun("create", "-b", _edit(bundle(["echo", "x" * (1 << 20)]), lambda c: None), "bigarg")
    one_line_error(p, "process.args[1]", "too long")
    assert pyrun.ids() == []


def test_a_property_the_spec_does_not_define_is_ignored(pyrun, bundle, tmp_path):
    """The spec's Extensibility: runtimes MUST NOT error on an unknown property, MUST ignore it."""
    def cfg(c):
        c["linux"]["landlock"] = {}
        c["process"]["futureLimit"] = 1
        c["xUnknown"] = {"a": 1}
    assert pyrun.run_ok(_edit(bundle(["echo", "ran"]), cfg)) == "ran\n"
    log = tmp_path / "debug.log"
    pyrun("create", "-b", _edit(bundle(["true"]), cfg), "unk", global_args=("--debug", "--log", str(log)),
          check=True)
    assert "linux.landlock is not a property of the runtime-spec: ignored" in log.read_text()
