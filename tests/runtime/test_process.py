"""The container process as the spec describes it, read back from inside real containers."""
import json
import os
import time

from tests.support.bundle import read_config, write_config


def _status_field(out: str, name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith(name + ":"))


def test_user_groups_umask_cwd_env(pyrun, bundle):
    b = bundle(["sh", "-c", "id -u; id -g; id -G; umask; pwd; echo $GREETING"])
    cfg = read_config(b)
    cfg["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [2000, 2001], "umask": 0o027}
    cfg["process"]["cwd"] = "/tmp"
    cfg["process"]["env"].append("GREETING=hi there")
    write_config(b, cfg)
    assert pyrun.run_ok(b).splitlines() == ["1000", "1001", "1001 2000 2001", "0027", "/tmp", "hi there"]


def test_capabilities_sets(pyrun, bundle):
    b = bundle(["cat", "/proc/self/status"])
    cfg = read_config(b)
    cfg["process"]["capabilities"] = {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN"],
        "effective": ["CAP_CHOWN", "CAP_KILL"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_NET_BIND_SERVICE"],
    }
    write_config(b, cfg)
    out = pyrun.run_ok(b)
    bit = {"CAP_CHOWN": 0, "CAP_KILL": 5, "CAP_NET_BIND_SERVICE": 10, "CAP_SYS_ADMIN": 21}
    mask = lambda *names: f"{sum(1 << bit[n] for n in names):016x}"  # noqa: E731
    assert _status_field(out, "CapBnd") == mask("CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN")
    assert _status_field(out, "CapInh") == mask("CAP_NET_BIND_SERVICE")
    assert _status_field(out, "CapAmb") == mask("CAP_NET_BIND_SERVICE")
    # execve as root recomputes effective/permitted from the bounding set (root's file caps),
    # so read them for a non-root user, where they are exactly ambient's.
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
    write_config(b, cfg)
    out = pyrun.run_ok(b, "c2")
    assert _status_field(out, "CapEff") == mask("CAP_NET_BIND_SERVICE")
    assert _status_field(out, "CapPrm") == mask("CAP_NET_BIND_SERVICE")
    assert _status_field(out, "CapAmb") == mask("CAP_NET_BIND_SERVICE")


def test_no_new_privileges_rlimits_oom_score(pyrun, bundle):
    b = bundle(["sh", "-c", "grep NoNewPrivs /proc/self/status; ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj"])
    cfg = read_config(b)
    cfg["process"]["noNewPrivileges"] = True
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 768}]
    cfg["process"]["oomScoreAdj"] = 123
    write_config(b, cfg)
    assert pyrun.run_ok(b).split() == ["NoNewPrivs:", "1", "512", "768", "123"]
    cfg["process"]["noNewPrivileges"] = False
    write_config(b, cfg)
    assert pyrun.run_ok(b, "c2").split()[:2] == ["NoNewPrivs:", "0"]


def test_a_nofile_soft_limit_below_what_the_runtime_needs(pyrun, bundle):
    """The init opens the exec fifo after `create` and exec's child opens files after its
    rlimits: a soft RLIMIT_NOFILE of 3 must still give a created container that starts,
    and the program must see 3 (`ulimit -n` is a shell builtin: it opens nothing)."""
    b = bundle(["sh", "-c", "ulimit -n; ulimit -Hn; read x"])
    cfg = read_config(b)
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 3, "hard": 64}]
    write_config(b, cfg)
    pyrun("create", "-b", b, "c1", check=True)
    assert json.loads(pyrun("state", "c1", check=True).stdout)["status"] == "created"
    pyrun("delete", "--force", "c1", check=True)
    cfg["process"]["args"] = ["sh", "-c", "ulimit -n; ulimit -Hn"]
    write_config(b, cfg)
    assert pyrun.run_ok(b, "c2").split() == ["3", "64"]
    cfg["process"]["args"] = ["sleep", "100"]
    write_config(b, cfg)
    pyrun("run", "-d", "-b", b, "c3", check=True)
    p = pyrun("exec", "c3", "sh", "-c", "ulimit -n; ulimit -Hn", check=True)
    assert p.stdout.split() == ["3", "64"]


def test_a_soft_limit_above_the_hard_one_is_refused_at_create(pyrun, bundle):
    b = bundle()
    cfg = read_config(b)
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 10}]
    write_config(b, cfg)
    p = pyrun("create", "-b", b, "c1")
    assert p.returncode == 1 and "soft limit 100 is above the hard limit 10" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and pyrun.ids() == []


def test_signal_dispositions_and_mask_are_reset(pyrun, bundle):
    """What the caller ignored or blocked, and what Python itself ignores (SIGPIPE,
    SIGXFSZ), must not reach the container's process: run and exec alike. That
    includes 32 and 33, which glibc keeps for itself and will not reset (seen
    ignored by a CI job's parent), so they are ignored here with the raw syscall."""
    import ctypes
    import signal
    import subprocess
    from tests.conftest import PYRUN
    libc = ctypes.CDLL(None, use_errno=True)
    RT_SIGACTION = {"x86_64": 13, "aarch64": 134}[os.uname().machine]

    def hostile_parent():
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup does
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1, signal.SIGINT])
        ignore = (ctypes.c_long * 4)(1, 0, 0, 0)  # the kernel's struct sigaction, SIG_IGN
        for sig in (32, 33):
            assert libc.syscall(RT_SIGACTION, sig, ignore, None, 8) == 0
    b = bundle(["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"])
    p = subprocess.run([PYRUN, "--root", pyrun.root, "run", "-b", b, "c1"], capture_output=True,
                       text=True, preexec_fn=hostile_parent, stdin=subprocess.DEVNULL, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"]
    pyrun("run", "-d", "-b", bundle(["sleep", "100"]), "c2", check=True)
    p = subprocess.run([PYRUN, "--root", pyrun.root, "exec", "c2", "grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"],
                       capture_output=True, text=True, preexec_fn=hostile_parent, stdin=subprocess.DEVNULL, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"]


def test_seccomp_makes_mkdir_fail_with_errno(pyrun, bundle):
    b = bundle(["sh", "-c", "grep Seccomp: /proc/self/status; mkdir /tmp/x 2>&1; echo rc=$?"])
    cfg = read_config(b)
    cfg["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]})
    cfg["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18}],
    }
    for nnp in (True, False):
        cfg["process"]["noNewPrivileges"] = nnp
        write_config(b, cfg)
        out = pyrun.run_ok(b, f"c{nnp}")
        assert "Seccomp:\t2" in out
        assert "Invalid cross-device link" in out and "rc=1" in out  # EXDEV is 18


def test_hooks_run_at_their_moments_with_state_on_stdin(pyrun, bundle, tmp_path):
    out = tmp_path / "hooks"
    out.mkdir()
    b = bundle(["sh", "-c", "echo started"])
    cfg = read_config(b)

    def hook(kind):
        # /bin/sh of the host for runtime-namespace hooks; the container's busybox sh has
        # the same path, and createContainer/startContainer run before/after pivot_root.
        return [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {out}/{kind}.json"]}]
    cfg["hooks"] = {k: hook(k) for k in ("prestart", "createRuntime", "createContainer", "poststart", "poststop")}
    write_config(b, cfg)
    pyrun("create", "-b", b, "h1", check=True)
    pid = json.loads(pyrun("state", "h1", check=True).stdout)["pid"]
    # the pid as the hook's namespace sees the init: the host's, and the container's own (1)
    for kind, want in (("prestart", pid), ("createRuntime", pid), ("createContainer", 1)):
        state = json.loads((out / f"{kind}.json").read_text())
        assert state["id"] == "h1" and state["pid"] == want and state["bundle"] == b, kind
    assert not (out / "poststart.json").exists()
    pyrun("start", "h1", check=True)
    assert json.loads((out / "poststart.json").read_text())["status"] in ("running", "stopped")
    for _ in range(200):
        if json.loads(pyrun("state", "h1").stdout)["status"] == "stopped":
            break
        time.sleep(0.02)
    pyrun("delete", "h1", check=True)
    assert json.loads((out / "poststop.json").read_text())["status"] == "stopped"


def test_failing_create_runtime_hook_aborts_and_cleans_up(pyrun, bundle, tmp_path):
    """runtime.md's lifecycle: after the failure, destroy; then the poststop hooks (as runc)."""
    b = bundle(["true"])
    cfg = read_config(b)
    cfg["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"]}],
                    "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"cat > {tmp_path}/poststop.json"]}]}
    write_config(b, cfg)
    p = pyrun("create", "-b", b, "h1")
    assert p.returncode == 1
    assert "createRuntime hook" in p.stderr and "exit status 3" in p.stderr and "nope" in p.stderr
    assert len(p.stderr.splitlines()) == 1, p.stderr
    assert pyrun.ids() == []
    state = json.loads((tmp_path / "poststop.json").read_text())
    assert state["id"] == "h1" and state["status"] == "stopped" and state["bundle"] == b


def test_hook_timeout(pyrun, bundle):
    b = bundle(["true"])
    cfg = read_config(b)
    cfg["hooks"] = {"prestart": [{"path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1}]}
    write_config(b, cfg)
    t = time.monotonic()
    p = pyrun("create", "-b", b, "h1")
    assert p.returncode == 1 and "timed out" in p.stderr
    assert time.monotonic() - t < 5
    assert pyrun.ids() == []


def test_failing_poststop_hook_is_logged_not_fatal(pyrun, bundle):
    b = bundle(["true"])
    cfg = read_config(b)
    cfg["hooks"] = {"poststop": [{"path": "/bin/false"}]}
    write_config(b, cfg)
    p = pyrun("run", "-b", b, "h1")
    assert p.returncode == 0
    assert "poststop hook" in p.stderr
    assert pyrun.ids() == []


def test_preserve_fds(pyrun, bundle, tmp_path):
    import subprocess
    from tests.conftest import PYRUN
    b = bundle(["sh", "-c", "cat <&3; ls /proc/self/fd | sort -n | tr '\\n' ' '"])
    data = tmp_path / "data"
    data.write_text("through fd 3\n")
    with open(data) as f:
        p = subprocess.run([PYRUN, "--root", pyrun.root, "run", "--preserve-fds", "1", "-b", b, "c1"],
                           pass_fds=(3,), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=30, preexec_fn=lambda: os.dup2(f.fileno(), 3))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "through fd 3"
    assert lines[1].split() == ["0", "1", "2", "3", "4"]  # 4 is ls's own directory fd


def test_scheduler_iopriority_affinity(pyrun, bundle):
    b = bundle(["sh", "-c", "cut -d' ' -f41 /proc/self/stat; ionice; taskset -p $$; cat /proc/self/stat | cut -d' ' -f19"])
    cfg = read_config(b)
    cfg["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 5}
    cfg["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 6}
    cfg["process"]["execCPUAffinity"] = {"final": "0"}
    write_config(b, cfg)
    out = pyrun.run_ok(b).splitlines()
    assert out[0] == "3"                       # SCHED_BATCH
    assert out[1] == "best-effort: prio 6"
    assert out[2].endswith(": 1")              # mask of cpu 0
    assert out[3] == "5"                       # nice


def test_bad_scheduler_and_missing_lsm_are_refused(pyrun, bundle):
    for change, needle in (({"scheduler": {"policy": "SCHED_TURBO"}}, "SCHED_TURBO"),
                           ({"apparmorProfile": "docker-default"}, "AppArmor"),
                           ({"execCPUAffinity": {"final": "x-y"}}, "execCPUAffinity")):
        b = bundle(["true"])
        cfg = read_config(b)
        cfg["process"].update(change)
        write_config(b, cfg)
        p = pyrun("create", "-b", b, "bad")
        if "apparmorProfile" in change and os.path.exists("/sys/kernel/security/apparmor"):
            continue  # this host has AppArmor: nothing to refuse
        assert p.returncode == 1 and needle in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr
        assert pyrun.ids() == []


def test_session_keyring(pyrun, bundle):
    b = bundle(["cat", "/proc/keys"])
    cfg = read_config(b)
    cfg["linux"]["maskedPaths"].remove("/proc/keys")
    write_config(b, cfg)
    assert "keyring-ct" in pyrun.run_ok(b, "keyring-ct")
    p = pyrun("run", "--no-new-keyring", "-b", b, "keyring-no")
    assert p.returncode == 0 and "keyring-no" not in p.stdout


def test_time_namespace_offsets(pyrun, bundle):
    b = bundle(["cat", "/proc/uptime"])
    cfg = read_config(b)
    cfg["linux"]["namespaces"].append({"type": "time"})
    cfg["linux"]["timeOffsets"] = {"boottime": {"secs": 86400 * 365}, "monotonic": {"secs": 3600}}
    write_config(b, cfg)
    inside = float(pyrun.run_ok(b).split()[0])
    host = float(open("/proc/uptime").read().split()[0])
    assert 86400 * 365 - 60 < inside - host < 86400 * 365 + 60


def test_listen_fds_socket_activation(pyrun, bundle, tmp_path):
    import subprocess
    from tests.conftest import PYRUN
    b = bundle(["sh", "-c", "echo $LISTEN_FDS $LISTEN_PID; cat <&3"])
    data = tmp_path / "sock-standin"
    data.write_text("activated\n")
    with open(data) as f:
        env = dict(os.environ, LISTEN_FDS="1")  # no LISTEN_PID: meant for whoever runs
        p = subprocess.run([PYRUN, "--root", pyrun.root, "run", "-b", b, "c1"], env=env, pass_fds=(3,),
                           preexec_fn=lambda: os.dup2(f.fileno(), 3), stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["1 1", "activated"]


def test_seccomp_notify_agent_gets_listener_and_answers(pyrun, bundle, tmp_path):
    """SCMP_ACT_NOTIFY: the agent at listenerPath receives the fd and the container's state
    over SCM_RIGHTS, and its answer is what mkdir sees inside the container."""
    import socket
    import threading
    from runtime import seccomp
    sock_path = str(tmp_path / "agent.sock")
    agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    agent.bind(sock_path)
    agent.listen(1)
    agent.settimeout(20)
    got = {}

    def serve():
        conn, _ = agent.accept()
        with conn:
            msg, fds, _, _ = socket.recv_fds(conn, 65536, 1)
        got["msg"] = json.loads(msg)
        req = seccomp.notify_receive(fds[0])
        seccomp.notify_respond(fds[0], req["id"], error=18)  # EXDEV
        os.close(fds[0])
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    b = bundle(["sh", "-c", "mkdir /tmp/x 2>&1; echo rc=$?"])
    cfg = read_config(b)
    cfg["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock_path,
                               "listenerMetadata": "agent-data",
                               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}
    write_config(b, cfg)
    out = pyrun.run_ok(b, "notify1")
    t.join(10)
    assert "Invalid cross-device link" in out and "rc=1" in out
    msg = got["msg"]
    assert msg["fds"] == ["seccompFd"] and msg["metadata"] == "agent-data"
    assert msg["state"]["id"] == "notify1" and msg["pid"] > 0


def test_missing_hook_binary_aborts_create(pyrun, bundle):
    b = bundle(["true"])
    cfg = read_config(b)
    cfg["hooks"] = {"createContainer": [{"path": "/no/such/hook"}]}
    write_config(b, cfg)
    p = pyrun("create", "-b", b, "h1")
    assert p.returncode == 1 and "/no/such/hook" in p.stderr and len(p.stderr.splitlines()) == 1
    assert pyrun.ids() == []


def test_start_container_hook_runs_inside_after_start(pyrun, bundle, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    b = bundle(["true"])
    cfg = read_config(b)
    cfg["mounts"].append({"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind"]})
    # resolved and run inside the container: its /bin/sh is the container's busybox
    cfg["hooks"] = {"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /out/state.json; hostname > /out/host"]}]}
    write_config(b, cfg)
    pyrun("create", "-b", b, "sc1", check=True)
    assert not (out / "state.json").exists()
    pyrun("start", "sc1", check=True)
    for _ in range(200):
        if (out / "host").exists() and (out / "host").read_text():
            break
        time.sleep(0.02)
    assert json.loads((out / "state.json").read_text())["id"] == "sc1"
    assert (out / "host").read_text().strip() == cfg["hostname"]


def test_the_init_is_a_session_of_its_own(pyrun, bundle):
    """As runc's init (setsid), also without a terminal: the caller's terminal signals reach
    the program only through `run`'s proxy, and criu can dump the container."""
    b = bundle(["sh", "-c", "cut -d' ' -f6 /proc/1/stat"])
    assert pyrun.run_ok(b).strip() == "1"
