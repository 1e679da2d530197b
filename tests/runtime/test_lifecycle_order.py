"""The lifecycle as the runtime-spec and runc order it: what fails, fails `create`; after `start`
the init only execs; hooks see the state runc gives them and a failing post-hook stops no other."""
import json
import os
import subprocess
import time

from tests.support.bundle import read_config, write_config
from tests.support.checks import fd_listener, receive_fd


def _edit(b, fn):
    cfg = read_config(b)
    fn(cfg)
    write_config(b, cfg)
    return b


def _state(pyrun, cid):
    return json.loads(pyrun("state", cid, check=True).stdout)


def test_a_capset_failure_fails_create(pyrun, bundle):
    """Effective caps beyond the permitted set: capset refuses. runc fails create for it."""
    def cfg(c):
        c["process"]["capabilities"]["effective"] = ["CAP_SYS_ADMIN"]
        c["process"]["capabilities"]["permitted"] = []
    p = pyrun("create", "-b", _edit(bundle(["true"]), cfg), "caps")
    assert p.returncode != 0
    assert len(p.stderr.strip().splitlines()) == 1 and "capabilities" in p.stderr, p.stderr
    assert pyrun.ids() == []


def test_a_signal_right_after_start_is_the_programs(pyrun, bundle, tmp_path):
    """A startContainer hook keeps the init busy after `start` returns: a TERM sent then
    must not end the Python init (exit 143); it is the program's (pid 1: ignored)."""
    def cfg(c):
        c["hooks"] = {"startContainer": [{"path": "/bin/sleep", "args": ["sleep", "0.5"]}]}
    pyrun("create", "-b", _edit(bundle(["sleep", "100"]), cfg), "sig", check=True)
    pyrun("start", "sig", check=True)
    pyrun("kill", "sig", "TERM", check=True)
    time.sleep(1.0)
    assert _state(pyrun, "sig")["status"] == "running"
    with open(f"/proc/{_state(pyrun, 'sig')['pid']}/comm") as f:
        assert f.read().strip() == "sleep"


def test_a_failing_start_container_hook_is_starts_error_and_stops_the_container(pyrun, bundle, tmp_path):
    """runtime.md step 7 (runc and crun return from start before the hooks have run): start
    fails with one line naming the hook, nothing after it runs (no later hook, no program,
    no poststart), the container is stopped, and delete runs poststop."""
    log = tmp_path / "log"

    def hook(word):
        return {"path": "/bin/sh", "args": ["sh", "-c", f"echo {word} >> {log}"]}
    b = _edit(bundle(["sh", "-c", f"echo program >> /dev/null"]), lambda c: c.__setitem__("hooks", {
        "startContainer": [hook("first"), {"path": "/bin/sh", "args": ["sh", "-c", "echo no such thing >&2; exit 3"]},
                           hook("after-failure")],
        "poststart": [{"path": "/bin/sh", "args": ["sh", "-c", f"echo poststart >> {log}"]}],
        "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"echo poststop >> {log}"]}]}))
    # the hooks run in the container (after pivot_root): its own /bin/sh, writing a host path it
    # cannot see, so the log is bound in
    cfg = read_config(b)
    log.write_text("")
    cfg["mounts"].append({"destination": str(log), "type": "bind", "source": str(log), "options": ["bind"]})
    write_config(b, cfg)
    pyrun("create", "-b", b, "sc", check=True)
    p = pyrun("start", "sc")
    assert p.returncode == 1, p.stderr
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and "startContainer hook #1" in p.stderr \
        and "exit status 3: no such thing" in p.stderr, p.stderr
    deadline = time.monotonic() + 10
    while _state(pyrun, "sc")["status"] != "stopped":
        assert time.monotonic() < deadline, _state(pyrun, "sc")
        time.sleep(0.05)
    pyrun("delete", "sc", check=True)
    assert log.read_text().split() == ["first", "poststop"]
    # `run`: the same one line (the init's stderr is run's own: it does not say it again), and
    # nothing left
    p = pyrun("run", "-b", b, "sc2")
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "startContainer hook #1" in p.stderr and pyrun.ids() == []


def test_a_start_container_hook_runs_with_no_signal_blocked(pyrun, bundle, tmp_path):
    """The init blocks every signal from `start` on (they are the program's); its hooks must
    not inherit that mask (it survives execve): a hook's own timeout or trap would not work."""
    out = tmp_path / "sigblk"
    out.write_text("")
    b = _edit(bundle(["true"]), lambda c: (
        c.__setitem__("hooks", {"startContainer": [
            {"path": "/bin/sh", "args": ["sh", "-c", f"grep SigBlk /proc/self/status > {out}"]}]}),
        c["mounts"].append({"destination": str(out), "type": "bind", "source": str(out), "options": ["bind"]})))
    assert pyrun("run", "-b", b, "blk").returncode == 0
    assert out.read_text().split() == ["SigBlk:", "0000000000000000"], out.read_text()


def test_poststart_failure_does_not_stop_the_hooks_after_it(pyrun, bundle, tmp_path):
    mark = tmp_path / "second-ran"
    b = _edit(bundle(["true"]), lambda c: c.__setitem__("hooks", {"poststart": [
        {"path": "/bin/false"},
        {"path": "/bin/sh", "args": ["sh", "-c", f"touch {mark}"]}]}))
    p = pyrun("run", "-b", b, "post")
    assert mark.exists(), p.stderr
    assert "poststart hook #0" in p.stderr


def test_creation_hooks_see_status_creating(pyrun, bundle, tmp_path):
    out = tmp_path / "states"
    hook = {"path": "/bin/sh", "args": ["sh", "-c", f"cat >> {out}; echo >> {out}"]}
    b = _edit(bundle(["true"]), lambda c: c.__setitem__("hooks", {"prestart": [hook], "createRuntime": [hook]}))
    pyrun("create", "-b", b, "hk", check=True)
    states = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert [s["status"] for s in states] == ["creating", "creating"]


def test_rootfs_propagation_holds_on_root_after_pivot(pyrun, bundle):
    b = _edit(bundle(["sh", "-c", "awk '$5==\"/\" {print $7}' /proc/self/mountinfo"]),
              lambda c: c["linux"].__setitem__("rootfsPropagation", "shared"))
    assert pyrun.run_ok(b).split()[0].startswith("shared:")


def test_rslave_is_a_valid_rootfs_propagation(pyrun, bundle):
    b = _edit(bundle(["sh", "-c", "awk '$5==\"/\" {print $7}' /proc/self/mountinfo"]),
              lambda c: c["linux"].__setitem__("rootfsPropagation", "rslave"))
    pyrun.run_ok(b)


def test_hostname_in_a_joined_uts_namespace(pyrun, bundle):
    pyrun("run", "-d", "-b", bundle(["sleep", "100"]), "utsowner", check=True)
    pid = _state(pyrun, "utsowner")["pid"]

    def cfg(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "uts"]
        c["linux"]["namespaces"].append({"type": "uts", "path": f"/proc/{pid}/ns/uts"})
        c["hostname"] = "joined-host"
    assert pyrun.run_ok(_edit(bundle(["hostname"]), cfg), "utsjoin") == "joined-host\n"


def test_hostname_without_a_uts_namespace_is_refused_at_create(pyrun, bundle):
    def cfg(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "uts"]
        c["hostname"] = "renamed"
    p = pyrun("create", "-b", _edit(bundle(["true"]), cfg), "nouts")
    assert p.returncode != 0 and "hostname" in p.stderr and pyrun.ids() == []
    assert os.uname().nodename != "renamed"


def test_tmpfs_without_mode_keeps_the_mode_of_what_it_covers(pyrun, bundle):
    b = bundle(["stat", "-c", "%a", "/data"], private_rootfs=True)
    os.makedirs(os.path.join(b, "rootfs", "data"))
    os.chmod(os.path.join(b, "rootfs", "data"), 0o710)
    b = _edit(b, lambda c: c["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                                               "options": ["size=1m"]}))
    assert pyrun.run_ok(b) == "710\n"


def test_exec_detached_gets_its_own_session(pyrun, bundle, tmp_path):
    pyrun("run", "-d", "-b", bundle(["sleep", "100"]), "sess", check=True)
    pid_file = tmp_path / "pid"
    pyrun("exec", "-d", "--pid-file", str(pid_file), "sess", "sleep", "50", check=True)
    pid = int(pid_file.read_text())
    assert os.getsid(pid) == pid


def test_terminal_has_onlcr_cleared(pyrun, bundle, tmp_path):
    b = _edit(bundle(["printf", "a\\nb\\n"]), lambda c: c["process"].__setitem__("terminal", True))
    path = str(tmp_path / "console.sock")
    srv = fd_listener(path)
    pyrun("create", "-b", b, "--console-socket", path, "tty", check=True)
    _, master = receive_fd(srv)
    fds = [master]
    pyrun("start", "tty", check=True)
    out = b""
    import select
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and select.select([fds[0]], [], [], 0.5)[0]:
        try:
            chunk = os.read(fds[0], 4096)
        except OSError:  # EIO: the slave side closed
            break
        if not chunk:
            break
        out += chunk
    os.close(fds[0])
    assert out == b"a\nb\n"


def test_a_missing_program_reads_as_runcs_words(pyrun, bundle):
    for cmd in ("run", "create"):
        p = pyrun(cmd, "-b", bundle(["/nonexistent"]), f"miss-{cmd}")
        assert p.returncode != 0 and "exec /nonexistent: no such file or directory" in p.stderr, p.stderr
    pyrun("run", "-d", "-b", bundle(["sleep", "100"]), "miss-exec", check=True)
    p = pyrun("exec", "miss-exec", "/nonexistent")
    assert p.returncode != 0 and "exec /nonexistent: no such file or directory" in p.stderr, p.stderr
    p = pyrun("exec", "miss-exec", "nonexistent", global_args=("--log", "/dev/null"))  # the bare message
    assert p.returncode != 0 and p.stderr == 'exec: "nonexistent": executable file not found in $PATH\n', p.stderr


def test_cli_details_as_runc(pyrun, bundle):
    assert pyrun("list", "--format", "json", check=True).stdout == "null\n"  # runc's encoder
    pyrun("run", "-d", "-b", bundle(["sleep", "100"]), "cli", check=True)
    out = pyrun("list", "--format", "json", check=True).stdout
    assert out.startswith('[{"ociVersion":') and ", " not in out  # compact, as runc prints it
    assert json.loads(out)[0]["owner"] == "root"
    assert pyrun("list", check=True).stdout.splitlines()[1].split()[-1] == "root"
    pyrun("kill", "cli", "0", check=True)  # signal 0: a liveness probe
    assert _state(pyrun, "cli")["status"] == "running"
    p = pyrun("exec", "cli", "/nonexistent")
    assert p.returncode == 255, (p.returncode, p.stderr)
    assert pyrun("exec", "cli", "sh", "-c", "exit 3").returncode == 3


def test_debug_lines_go_to_the_log_file_made_at_start(pyrun, bundle, tmp_path):
    log = tmp_path / "sub" / "pyrun.log"
    log.parent.mkdir()
    assert pyrun("state", "nosuch", global_args=("--log", str(log))).returncode != 0
    assert log.exists()  # made at start, as runc makes it
    quiet = tmp_path / "quiet.log"
    pyrun("list", global_args=("--log", str(quiet)), check=True)
    assert quiet.exists() and quiet.read_text() == ""
    pyrun("create", "-b", bundle(["true"]), "dbg", global_args=("--debug", "--log", str(log)), check=True)
    assert "level=debug" in log.read_text() and "create" in log.read_text()


def test_run_is_a_subreaper_unless_told_not(pyrun, bundle):
    """Without a pid namespace a double-forked process is orphaned: it comes to `run`."""
    from tests.conftest import PYRUN
    script = "(sleep 3 & echo $! > /tmp/orphan); sleep 0.5; grep PPid /proc/$(cat /tmp/orphan)/status"
    b = bundle(["sh", "-c", script], private_rootfs=True)
    cfg = read_config(b)
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "pid"]
    cfg["root"]["readonly"] = False
    write_config(b, cfg)
    for flags, expect_ours in (((), True), (("--no-subreaper",), False)):
        run = subprocess.Popen([PYRUN, "--root", pyrun.root, "run", *flags, "-b", b, "reap"],
                               stdout=subprocess.PIPE, text=True)
        out, _ = run.communicate(timeout=20)
        ppid = int(out.split()[-1])
        assert (ppid == run.pid) is expect_ours, (flags, out, run.pid)


def test_home_comes_from_the_containers_passwd(pyrun, bundle):
    def cfg(c):
        c["process"]["env"] = [e for e in c["process"]["env"] if not e.startswith("HOME=")]
        c["process"]["user"] = {"uid": 65534, "gid": 65534}
    assert pyrun.run_ok(_edit(bundle(["sh", "-c", "echo $HOME"]), cfg)) == "/home\n"
    pyrun("run", "-d", "-b", bundle(["sleep", "100"]), "homex", check=True)
    out = pyrun("exec", "-u", "65534", "homex", "sh", "-c", "echo $HOME", check=True).stdout
    assert out == "/home\n"


def test_console_socket_in_a_private_dir_with_a_user_namespace(pyrun, bundle, tmp_path):
    """The socket is reached with the host's credentials, before the user namespace's root."""
    top = "/tmp/pyrun-userns-tty-" + os.urandom(4).hex()
    os.makedirs(top)
    os.chmod(top, 0o755)
    try:
        from tests.support.bundle import make_rootfs
        rootfs = make_rootfs(os.path.join(top, "rootfs"))
        b = bundle(["sh", "-c", "id -u"])
        os.unlink(os.path.join(b, "rootfs"))
        os.symlink(rootfs, os.path.join(b, "rootfs"))

        def cfg(c):
            c["process"]["terminal"] = True
            c["linux"]["namespaces"].append({"type": "user"})
            c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
            c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        _edit(b, cfg)
        private = tmp_path / "private"
        private.mkdir(mode=0o700)
        path = str(private / "console.sock")
        srv = fd_listener(path)
        p = pyrun("create", "-b", b, "--console-socket", path, "ttyns")
        assert p.returncode == 0, p.stderr
        os.close(receive_fd(srv)[1])
    finally:
        import shutil
        shutil.rmtree(top)


def test_a_config_without_a_mount_namespace_runs_in_the_callers(pyrun, bundle):
    """As runc and crun run it: in the caller's mount namespace, which stays untouched; what
    needs a mount namespace of its own is refused by name (runc would drop it silently)."""
    def no_mountns(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "mount"]
        for key in ("maskedPaths", "readonlyPaths"):
            c["linux"].pop(key, None)
        c["mounts"] = []
        c["root"]["readonly"] = False
    before = open("/proc/self/mountinfo").read()
    b = _edit(bundle(["sleep", "100"]), no_mountns)
    pyrun("run", "-d", "-b", b, "nomnt-run", check=True)
    pid = _state(pyrun, "nomnt-run")["pid"]
    assert os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
    assert os.path.realpath(f"/proc/{pid}/root") == os.path.realpath(os.path.join(b, "rootfs"))
    assert open("/proc/self/mountinfo").read() == before
    p = pyrun("create", "-b", _edit(b, lambda c: c["linux"].__setitem__("maskedPaths", ["/proc/kcore"])), "nomnt")
    assert p.returncode != 0 and "linux.maskedPaths needs a mount namespace" in p.stderr
    assert pyrun.ids() == ["nomnt-run"]
