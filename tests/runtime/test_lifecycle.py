"""The runc lifecycle through the real CLI: create, state, start, kill, delete, run."""
import json
import os
import time

from tests.support.bundle import default_config, write_config


def _state(pyrun, cid):
    p = pyrun("state", cid, check=True)
    return json.loads(p.stdout)


def _wait_status(pyrun, cid, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = _state(pyrun, cid)
        if s["status"] == want:
            return s
        time.sleep(0.02)
    raise AssertionError(f"{cid} never became {want}: {s}")


def test_run_passes_exit_status_through(pyrun, bundle):
    b = bundle(["sh", "-c", "echo out; echo err >&2; exit 7"])
    p = pyrun("run", "--bundle", b, "c1")
    assert p.returncode == 7, p.stderr
    assert p.stdout == "out\n"
    assert p.stderr == "err\n"
    assert pyrun.ids() == []


def test_run_reports_death_by_signal_as_128_plus(pyrun, bundle):
    import subprocess
    from tests.conftest import PYRUN
    b = bundle(["sleep", "100"])
    run = subprocess.Popen([PYRUN, "--root", pyrun.root, "run", "-b", b, "c1"])
    try:
        _wait_until_exists(pyrun, "c1")
        _wait_status(pyrun, "c1", "running")
        pyrun("kill", "c1", "KILL", check=True)
        assert run.wait(timeout=10) == 137
    finally:
        run.kill()
    assert pyrun.ids() == []


def test_run_forwards_signals(pyrun, bundle):
    import signal
    import subprocess
    from tests.conftest import PYRUN
    b = bundle(["sh", "-c", "trap 'exit 42' USR1; while true; do sleep 0.05; done"])
    run = subprocess.Popen([PYRUN, "--root", pyrun.root, "run", "-b", b, "c1"])
    try:
        _wait_until_exists(pyrun, "c1")
        _wait_status(pyrun, "c1", "running")
        # resend until the trap is in place (pid 1 ignores signals it has no handler for)
        deadline = time.monotonic() + 10
        while run.poll() is None and time.monotonic() < deadline:
            run.send_signal(signal.SIGUSR1)
            time.sleep(0.1)
        assert run.wait(timeout=10) == 42
    finally:
        run.kill()


def _wait_until_exists(pyrun, cid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = pyrun("state", cid)
        if p.returncode == 0 and json.loads(p.stdout)["status"] != "creating":
            return
        time.sleep(0.02)
    raise AssertionError(f"{cid} never appeared")


def test_create_start_kill_delete(pyrun, bundle, tmp_path):
    b = bundle(["sleep", "100"])
    pidfile = tmp_path / "pid"
    pyrun("create", "--bundle", b, "--pid-file", str(pidfile), "c1", check=True)
    s = _state(pyrun, "c1")
    assert s["status"] == "created"
    assert s["id"] == "c1" and s["bundle"] == b
    pid = s["pid"]
    assert int(pidfile.read_text()) == pid
    # the init lives in new pid and mount namespaces
    for ns in ("pid", "mnt", "uts", "ipc", "net"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
    assert pyrun("start", "c1").returncode == 0
    s = _state(pyrun, "c1")
    assert s["status"] == "running" and s["pid"] == pid
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0] == b"sleep"
    pyrun("kill", "c1", "KILL", check=True)
    _wait_status(pyrun, "c1", "stopped")
    pyrun("delete", "c1", check=True)
    assert pyrun.ids() == []
    p = pyrun("state", "c1")
    assert p.returncode == 1 and "container does not exist" in p.stderr


def test_kill_default_is_sigterm_and_numbers_work(pyrun, bundle):
    b = bundle(["sh", "-c", "trap 'exit 42' TERM; while true; do sleep 0.1; done"])
    pyrun("run", "-d", "-b", b, "c1", check=True)
    # Until the shell has installed its trap, SIGTERM to a namespace's pid 1 is ignored:
    # send it again until it lands.
    deadline = time.monotonic() + 10
    while json.loads(pyrun("state", "c1", check=True).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline, "SIGTERM never stopped the container"
        pyrun("kill", "c1")
        time.sleep(0.1)
    pyrun("delete", "c1", check=True)
    pyrun("run", "-d", "-b", b, "c2", check=True)
    pyrun("kill", "c2", "9", check=True)
    _wait_status(pyrun, "c2", "stopped")


def test_kill_created_container(pyrun, bundle):
    """Before start the init is pid 1 of its namespace; SIGTERM must still end it."""
    pyrun("create", "-b", bundle(["true"]), "c1", check=True)
    pyrun("kill", "c1", "TERM", check=True)
    _wait_status(pyrun, "c1", "stopped")


def test_hostname_and_domainname(pyrun, bundle):
    cfg = default_config()
    b = bundle(["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"])
    cfg = json.load(open(os.path.join(b, "config.json")))
    cfg["hostname"], cfg["domainname"] = "box-7", "example.test"
    write_config(b, cfg)
    p = pyrun("run", "-b", b, "c1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["box-7", "example.test"]


def test_list_and_json(pyrun, bundle):
    b = bundle(["sleep", "100"])
    pyrun("create", "-b", b, "one", check=True)
    pyrun("run", "-d", "-b", b, "two", check=True)
    out = pyrun("list", check=True).stdout.splitlines()
    assert out[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert [line.split()[:1] + line.split()[2:3] for line in out[1:]] == [["one", "created"], ["two", "running"]]
    assert pyrun("list", "-q", check=True).stdout == "one\ntwo\n"
    data = json.loads(pyrun("list", "--format", "json", check=True).stdout)
    assert {d["id"]: d["status"] for d in data} == {"one": "created", "two": "running"}


def test_delete_force_running_and_created(pyrun, bundle):
    b = bundle(["sleep", "100"])
    pyrun("run", "-d", "-b", b, "r", check=True)
    pid = _state(pyrun, "r")["pid"]
    p = pyrun("delete", "r")
    assert p.returncode == 1 and "not stopped: running" in p.stderr
    pyrun("delete", "--force", "r", check=True)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    pyrun("create", "-b", b, "c", check=True)
    pyrun("delete", "c", check=True)  # a created container is killed and deleted, as runc does
    assert pyrun.ids() == []


def test_pause_resume(pyrun, bundle):
    pyrun("run", "-d", "-b", bundle(["sleep", "100"]), "c1", check=True)
    pyrun("pause", "c1", check=True)
    assert _state(pyrun, "c1")["status"] == "paused"
    pyrun("resume", "c1", check=True)
    assert _state(pyrun, "c1")["status"] == "running"


def test_cgroup_made_and_removed(pyrun, bundle):
    b = bundle(["sleep", "100"])
    cfg = json.load(open(os.path.join(b, "config.json")))
    cfg["linux"]["cgroupsPath"] = "/pyrun-test/c1"
    write_config(b, cfg)
    pyrun("run", "-d", "-b", b, "c1", check=True)
    pid = _state(pyrun, "c1")["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    assert all(line.endswith(":/pyrun-test/c1") for line in lines), lines  # every hierarchy
    pids_dir = "/sys/fs/cgroup/pids/pyrun-test/c1"
    if os.path.isdir("/sys/fs/cgroup/pids"):
        assert str(pid) in open(os.path.join(pids_dir, "cgroup.procs")).read().split()
    pyrun("delete", "-f", "c1", check=True)
    assert not os.path.exists(pids_dir)


def test_python_api(tmp_path, bundle, root_required):
    from runtime import Container
    root = str(tmp_path / "api-root")
    b = bundle(["sleep", "100"])
    c = Container.create("api1", b, root=root)
    try:
        assert c.state()["status"] == "created"
        c.start()
        assert Container.load("api1", root=root).state()["status"] == "running"
        c.kill(9)
        deadline = time.monotonic() + 5
        while c.status() != "stopped" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert c.status() == "stopped"
    finally:
        c.delete(force=True)
    assert os.listdir(root) == []


def test_features_and_version(pyrun):
    f = json.loads(pyrun("features", check=True).stdout)
    assert "createRuntime" in f["hooks"]
    assert "rbind" in f["mountOptions"] and "ro" in f["mountOptions"]
    assert set(f["linux"]["namespaces"]) >= {"pid", "mount", "user", "cgroup", "time", "network"}
    assert "CAP_SYS_ADMIN" in f["linux"]["capabilities"]
    assert pyrun("--version", check=True).stdout.startswith("pyrun version")


def test_log_json_for_conmon(pyrun, tmp_path):
    log = tmp_path / "log.json"
    p = pyrun("state", "nope", global_args=("--log-format=json", "--log", str(log)))
    assert p.returncode == 1
    assert p.stderr == "container does not exist\n"
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and entry["msg"] == "container does not exist"


def test_kill_all_signals_every_process_in_the_cgroup(pyrun, bundle):
    b = bundle(["sh", "-c", "sleep 1000 & sleep 1000 & wait"])
    cfg = json.load(open(os.path.join(b, "config.json")))
    cfg["linux"]["cgroupsPath"] = "/pyrun-test/killall"
    write_config(b, cfg)
    pyrun("run", "-d", "-b", b, "ka", check=True)
    procs = "/sys/fs/cgroup/pids/pyrun-test/killall/cgroup.procs"
    if not os.path.exists(procs):
        procs = "/sys/fs/cgroup/pyrun-test/killall/cgroup.procs"
    deadline = time.monotonic() + 5
    while len(open(procs).read().split()) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = [int(p) for p in open(procs).read().split()]
    assert len(pids) == 3
    pyrun("kill", "--all", "ka", "KILL", check=True)
    _wait_status(pyrun, "ka", "stopped")
    for pid in pids:
        try:
            state = open(f"/proc/{pid}/stat").read().split()[2]
        except FileNotFoundError:
            continue
        assert state == "Z", f"{pid} still alive after kill --all"
