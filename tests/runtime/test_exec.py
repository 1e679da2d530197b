"""`pyrun exec`: a new process inside a running container, with runc's flags."""
# runc exec exits 255 for every failure of its own (fatalWithCode(…, 255)); only a usage
# error is 1.
import json
import os
import time

import pytest

from tests.support.checks import fd_listener, receive_fd


@pytest.fixture
def running(pyrun, bundle):
    b = bundle(["sleep", "1000"])
    pyrun("run", "-d", "-b", b, "x1", check=True)
    return json.loads(pyrun("state", "x1", check=True).stdout)["pid"]


def _exec(pyrun, *args, check=True):
    p = pyrun("exec", *args)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def test_exec_joins_namespaces_and_cgroup(pyrun, running):
    out = _exec(pyrun, "x1", "sh", "-c", "echo $$; readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt;"
                "cat /proc/1/cmdline | tr '\\0' ' '; echo; cat /proc/self/cgroup").stdout.splitlines()
    init = running
    assert out[0] != "1" and int(out[0]) > 1  # a pid of the container's namespace
    assert out[1] == os.readlink(f"/proc/{init}/ns/pid")
    assert out[2] == os.readlink(f"/proc/{init}/ns/mnt")
    assert out[3].strip() == "sleep 1000"
    assert out[4:] and all(line.endswith(":/x1") for line in out[4:]), out  # every hierarchy


def test_exec_exit_status_and_missing_binary(pyrun, running):
    assert _exec(pyrun, "x1", "sh", "-c", "exit 9", check=False).returncode == 9
    p = _exec(pyrun, "x1", "nosuchbinary", check=False)
    assert p.returncode == 255 and "nosuchbinary" in p.stderr and len(p.stderr.splitlines()) == 1


def test_exec_flags(pyrun, running):
    out = _exec(pyrun, "--env", "FOO=bar", "-e", "BAZ=qux", "--cwd", "/tmp", "-u", "1000:1001",
                "--additional-gids", "2000", "--no-new-privs", "x1",
                "sh", "-c", "echo $FOO $BAZ; pwd; id -u; id -G; grep NoNewPrivs /proc/self/status").stdout
    assert out.splitlines() == ["bar qux", "/tmp", "1000", "1001 2000", "NoNewPrivs:\t1"]


def test_exec_cap_adds_capability(pyrun, running):
    out = _exec(pyrun, "--cap", "CAP_SYS_ADMIN", "x1", "grep", "CapBnd", "/proc/self/status").stdout
    assert int(out.split()[1], 16) & (1 << 21)
    out = _exec(pyrun, "x1", "grep", "CapBnd", "/proc/self/status").stdout
    assert not int(out.split()[1], 16) & (1 << 21)


def test_exec_process_file(pyrun, running, tmp_path):
    proc = {"args": ["sh", "-c", "echo $A; id -u"], "env": ["A=from-file", "PATH=/bin"], "cwd": "/",
            "user": {"uid": 7, "gid": 7}}
    f = tmp_path / "process.json"
    f.write_text(json.dumps(proc))
    assert _exec(pyrun, "--process", str(f), "x1").stdout.split() == ["from-file", "7"]
    f.write_text(json.dumps({"args": "not-a-list"}))
    p = _exec(pyrun, "--process", str(f), "x1", check=False)
    assert p.returncode == 255 and len(p.stderr.splitlines()) == 1


def test_exec_detach_pid_file(pyrun, running, tmp_path):
    pidfile = tmp_path / "exec.pid"
    _exec(pyrun, "-d", "--pid-file", str(pidfile), "x1", "sleep", "77")
    pid = int(pidfile.read_text())
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read() == b"sleep\x0077\x00"
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{running}/ns/pid")


def test_exec_holds_no_runtime_fds(pyrun, running):
    out = _exec(pyrun, "x1", "ls", "/proc/self/fd").stdout.split()
    assert sorted(int(x) for x in out) == [0, 1, 2, 3]


def test_exec_tty_over_console_socket(pyrun, running, tmp_path):
    path = str(tmp_path / "c.sock")
    srv = fd_listener(path)
    _exec(pyrun, "-t", "-d", "--console-socket", path, "x1", "sh", "-c", "tty; echo on-tty")
    fds = [receive_fd(srv)[1]]
    out = b""
    deadline = time.monotonic() + 5
    while b"on-tty" not in out and time.monotonic() < deadline:
        try:
            out += os.read(fds[0], 4096)
        except OSError:
            break
    assert b"/dev/pts/" in out and b"on-tty" in out


def test_exec_into_stopped_or_missing(pyrun, bundle):
    b = bundle(["true"])
    pyrun("run", "-d", "-b", b, "gone", check=True)
    for _ in range(200):
        if json.loads(pyrun("state", "gone").stdout)["status"] == "stopped":
            break
        time.sleep(0.02)
    p = _exec(pyrun, "gone", "true", check=False)
    assert p.returncode == 255 and "stopped" in p.stderr
    p = _exec(pyrun, "ghost", "true", check=False)
    assert p.returncode == 255 and "does not exist" in p.stderr


def test_runtime_binary_unreachable_through_proc_self_exe(pyrun, bundle, tmp_path):
    """CVE-2019-5736: a container program that is /proc/self/exe (or a script whose
    interpreter is) must never get the host's runtime binary to run, or to write."""
    import hashlib
    import sys
    real = os.path.realpath(sys.executable)
    before = hashlib.sha256(open(real, "rb").read()).hexdigest()
    b = bundle(["/proc/self/exe", "-c", "open('/proc/self/exe', 'wb').write(b'pwned')"],
               private_rootfs=True)
    with open(os.path.join(b, "rootfs", "bin", "evil"), "w") as f:
        f.write("#!/proc/self/exe\nprint('interpreter escaped')\n")
    os.chmod(os.path.join(b, "rootfs", "bin", "evil"), 0o755)
    p = pyrun("run", "-b", b, "cve1")
    assert p.returncode != 0 and "refusing" in p.stderr
    cfg = json.load(open(os.path.join(b, "config.json")))
    cfg["process"]["args"] = ["/bin/evil"]
    json.dump(cfg, open(os.path.join(b, "config.json"), "w"))
    p = pyrun("run", "-b", b, "cve2")
    assert p.returncode != 0 and "escaped" not in p.stdout
    # and through exec into a running container
    cfg["process"]["args"] = ["sleep", "100"]
    json.dump(cfg, open(os.path.join(b, "config.json"), "w"))
    pyrun("run", "-d", "-b", b, "cve3", check=True)
    p = pyrun("exec", "cve3", "/bin/evil")
    assert p.returncode != 0 and "escaped" not in p.stdout
    p = pyrun("exec", "cve3", "sh", "-c", "readlink /proc/self/exe")
    assert p.stdout.strip() == "/bin/busybox"
    assert hashlib.sha256(open(real, "rb").read()).hexdigest() == before


def test_exec_bad_flags(pyrun, running):
    for args, needle in ((["--cwd", "relative"], "absolute"), (["--cap", "CAP_BOGUS"], "CAP_BOGUS"),
                         (["-u", "x:y"], "--user"), (["--additional-gids", "wheel"], "numeric")):
        p = _exec(pyrun, *args, "x1", "true", check=False)
        assert p.returncode == 255 and needle in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr


def test_exec_into_a_sub_cgroup(pyrun, running):
    """--cgroup [ctrl:]path: an existing sub-cgroup of the container's; never outside it."""
    cfg_dirs = json.loads(open(os.path.join(pyrun.root, "x1", "state.json")).read())["cgroup"]["dirs"]
    subs = []
    for d in cfg_dirs.values():
        os.mkdir(os.path.join(d, "sub"))
        subs.append(os.path.join(d, "sub"))
        for name in ("cpuset.cpus", "cpuset.mems"):  # a new v1 cpuset takes no task until set
            # (on v2 the sub-cgroup has these files only when the parent delegates cpuset)
            if os.path.exists(os.path.join(d, "sub", name)):
                with open(os.path.join(d, name)) as src, open(os.path.join(d, "sub", name), "w") as dst:
                    dst.write(src.read())
    try:
        out = _exec(pyrun, "--cgroup", "sub", "x1", "cat", "/proc/self/cgroup").stdout
        assert all(line.endswith("/sub") for line in out.split()), out
        for bad, needle in (("../x", "inside"), ("nosuch", "does not exist"), ("bogusctl:sub", "controller")):
            p = _exec(pyrun, "--cgroup", bad, "x1", "true", check=False)
            assert p.returncode == 255 and needle in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr
    finally:
        for s in subs:
            for _ in range(100):
                try:
                    os.rmdir(s)
                    break
                except OSError:
                    time.sleep(0.02)


def test_exec_into_a_paused_container_needs_ignore_paused(pyrun, running, tmp_path):
    pyrun("pause", "x1", check=True)
    p = _exec(pyrun, "x1", "true", check=False)
    assert p.returncode == 255 and "--ignore-paused" in p.stderr
    pid_file = tmp_path / "pid"
    import subprocess
    from tests.conftest import PYRUN
    proc = subprocess.Popen([PYRUN, "--root", pyrun.root, "exec", "--ignore-paused", "--pid-file",
                             str(pid_file), "x1", "sh", "-c", "echo thawed"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    assert proc.poll() is None  # frozen with the container
    pyrun("resume", "x1", check=True)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and out == "thawed\n"
