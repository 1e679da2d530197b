"""checkpoint and restore through the real CLI and the real criu.

The refusals run anywhere. The round trips need a kernel criu works on: this host's
fails `criu check` (the reason is printed in the skip), so tests/test_checkpoint_vm.py runs
them (the tests taking the `criu` fixture) in the cgroup v2 guest (Debian's 6.1 kernel),
where they must pass.
"""
import json
import os
import shutil
import subprocess
import time

import pytest

from tests.support.bundle import make_bundle, read_config, write_config
from tests.support.checks import one_line_error

# The init is a session of its own (as runc's): criu cannot dump a pid namespace whose session
# leader is outside it. No setsid here, so that a round trip fails if the init stops being one.
# The file is written from a subshell: a redirected builtin would dup2 the shell's own fd 1 for a
# moment, and a dump in that moment records /tmp/n, not the pipe, as the init's stdout.
COUNTER = ["/bin/sh", "-c", "i=0; while :; do (echo $i > /tmp/n); echo $i; i=$((i+1)); sleep 0.1; done"]

_criu_check: list = []


def criu_unusable() -> str | None:
    """Why criu cannot checkpoint here (its own words), or None; asked once a session."""
    if not _criu_check:
        if not shutil.which("criu"):
            _criu_check.append("criu is not installed (Debian: criu)")
        else:
            p = subprocess.run(["criu", "check"], capture_output=True, text=True)
            errors = [line for line in (p.stdout + p.stderr).splitlines() if "Error" in line]
            _criu_check.append(None if p.returncode == 0 else
                               f"`criu check` fails on kernel {os.uname().release}: "
                               + (errors[0] if errors else p.stderr.strip()[-300:]))
    return _criu_check[0]


@pytest.fixture
def criu(pyrun):
    reason = criu_unusable()
    if reason:
        pytest.skip(reason)
    return pyrun


def _counter(tmp_path, name="b"):
    return make_bundle(str(tmp_path / name), args=COUNTER, root={"path": "rootfs", "readonly": False})


def _count(bundle: str) -> int | None:
    try:
        with open(os.path.join(bundle, "rootfs", "tmp", "n")) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def _wait_count(bundle: str, at_least: int, timeout=60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = _count(bundle)
        if n is not None and n >= at_least:
            return n
        time.sleep(0.05)
    raise AssertionError(f"the counter never reached {at_least}: {_count(bundle)}")


def _status(pyrun, cid):
    p = pyrun("state", cid)
    return json.loads(p.stdout)["status"] if p.returncode == 0 else None


# -- refusals: anywhere ---------------------------------------------------------------------

def test_checkpoint_of_an_unknown_container(pyrun, tmp_path):
    one_line_error(pyrun("checkpoint", "--image-path", str(tmp_path / "img"), "nope"), "does not exist")
    assert not (tmp_path / "img").exists()


def test_checkpoint_needs_a_running_container(pyrun, tmp_path):
    b = make_bundle(str(tmp_path / "b"), args=["sleep", "100"])
    pyrun("create", "-b", b, "c1", check=True)
    one_line_error(pyrun("checkpoint", "--image-path", str(tmp_path / "img"), "c1"), "c1", "created")
    pyrun("kill", "c1", "KILL", check=True)
    deadline = time.monotonic() + 10
    while _status(pyrun, "c1") != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    one_line_error(pyrun("checkpoint", "--image-path", str(tmp_path / "img"), "c1"), "c1", "stopped")
    assert not (tmp_path / "img").exists()
    pyrun("delete", "c1", check=True)


@pytest.mark.parametrize("flags,needle", [
    (["--manage-cgroups-mode", "bogus"], "--manage-cgroups-mode"),
    (["--empty-ns", "bogus"], "--empty-ns"),
    (["--lazy-pages"], "--lazy-pages"),
    (["--status-fd", "5"], "--status-fd"),
    (["--page-server", "nowhere"], "--page-server"),
    (["--no-such-flag"], "no-such-flag"),
])
def test_checkpoint_refuses_bad_flags_before_anything(pyrun, tmp_path, flags, needle):
    b = make_bundle(str(tmp_path / "b"), args=["sleep", "100"])
    pyrun("run", "-d", "-b", b, "c1", check=True)
    try:
        one_line_error(pyrun("checkpoint", "--image-path", str(tmp_path / "img"), *flags, "c1"), needle)
        assert not (tmp_path / "img").exists()
        assert _status(pyrun, "c1") == "running"
    finally:
        pyrun("delete", "-f", "c1")


def test_restore_refusals_leave_nothing(pyrun, tmp_path):
    b = make_bundle(str(tmp_path / "b"), args=["sleep", "100"])
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--image-path", str(tmp_path / "missing")], "does not exist"),
        (["--image-path", str(empty)], "descriptors.json"),
        (["--image-path", str(empty), "--no-pivot"], "--no-pivot"),
        (["--image-path", str(empty), "--lazy-pages"], "--lazy-pages"),
        (["--image-path", str(empty), "--manage-cgroups-mode", "x"], "--manage-cgroups-mode"),
        (["--image-path", str(empty), "--empty-ns", "x"], "--empty-ns"),
    ]
    for flags, needle in cases:
        one_line_error(pyrun("restore", "-d", "-b", b, *flags, "c2"), needle)
        assert pyrun.ids() == []
    (empty / "descriptors.json").write_text('["/dev/null", "/dev/null", "/dev/null"]')
    one_line_error(pyrun("restore", "-d", "-b", b, "--image-path", str(empty), "--lsm-profile", "nolsm", "c2"),
                   "--lsm-profile")
    one_line_error(pyrun("restore", "-d", "-b", str(tmp_path / "nobundle"), "--image-path", str(empty), "c2"),
                   "bundle")
    assert pyrun.ids() == []


def test_a_missing_criu_binary_is_one_line(pyrun, tmp_path):
    b = make_bundle(str(tmp_path / "b"), args=["sleep", "100"])
    pyrun("run", "-d", "-b", b, "c1", check=True)
    try:
        p = pyrun("checkpoint", "--image-path", str(tmp_path / "img"), "c1", global_args=("--criu", "/nonexistent/criu"))
        one_line_error(p, "/nonexistent/criu")
        assert _status(pyrun, "c1") == "running"
    finally:
        pyrun("delete", "-f", "c1")


def test_where_criu_fails_checkpoint_says_why_in_one_line_and_the_container_runs_on(pyrun, tmp_path):
    if criu_unusable() is None:
        pytest.skip("criu works on this kernel: the round trips below cover it")
    if not shutil.which("criu"):
        pytest.skip("criu is not installed (Debian: criu)")
    b = _counter(tmp_path)
    pyrun("run", "-d", "-b", b, "c1", check=True)
    try:
        n = _wait_count(b, 1)
        line = one_line_error(pyrun("checkpoint", "--image-path", str(tmp_path / "img"), "c1"), "criu dump failed")
        assert "dump.log" in line
        assert _status(pyrun, "c1") == "running"
        assert _wait_count(b, n + 2) > n  # still counting: criu let it go
    finally:
        pyrun("delete", "-f", "c1")


def test_rpc_messages_read_as_criu_own_protobuf_reads_them():
    """criu.encode against the generated code criu ships (pycriu's rpc_pb2, Debian's protobuf)."""
    oracle = "/usr/lib/python3/dist-packages/pycriu/rpc_pb2.py"
    if not os.path.exists(oracle):
        pytest.skip("pycriu's rpc_pb2 is not installed (Debian: criu)")
    from runtime import criu
    req = {"type": criu.RESTORE, "opts": {
        "images_dir_fd": 7, "pid": -1, "log_level": 4, "log_file": "restore.log", "root": "/r/oot",
        "ext_mnt": [{"key": "/a", "val": "/b"}, {"key": "/c", "val": "/d"}], "manage_cgroups_mode": 3,
        "empty_ns": 0x40000000, "cg_root": [{"path": "/x"}, {"ctrl": "cpu,cpuacct", "path": "/y"}],
        "external": ["net[1]:extRootNetNS"], "inherit_fd": [{"key": "pipe:[5]", "fd": 1}], "rst_sibling": True,
        "ps": {"address": "127.0.0.1", "port": 9}}, "notify_success": False}
    code = ("import sys, json, pycriu.rpc_pb2 as r\n"
            "from google.protobuf.json_format import MessageToDict\n"
            "q = r.criu_req(); q.ParseFromString(sys.stdin.buffer.read())\n"
            "print(json.dumps(MessageToDict(q, preserving_proto_field_name=True, use_integers_for_enums=True)))\n"
            "a = r.criu_resp(type=r.NOTIFY, success=True, cr_errno=-5); a.notify.script = 'post-restore'\n"
            "a.notify.pid = 42; a.restore.pid = 43; a.version.major_number = 3; a.version.minor_number = 17\n"
            "sys.stdout.write(a.SerializeToString().hex())\n")
    p = subprocess.run(["/usr/bin/python3", "-c", code], input=criu.encode(criu.REQ, req), capture_output=True)
    if p.returncode != 0 and b"No module named 'google'" in p.stderr:
        pytest.skip("Debian's python3-protobuf is not installed")
    assert p.returncode == 0, p.stderr
    seen, answer = p.stdout.decode().split("\n", 1)
    assert json.loads(seen) == req
    resp = criu.decode(criu.RESP, bytes.fromhex(answer))
    assert resp == {"type": criu.NOTIFY, "success": True, "cr_errno": -5, "notify": {"script": "post-restore", "pid": 42},
                    "restore": {"pid": 43}, "version": {"major_number": 3, "minor_number": 17}}


# -- round trips: where criu works (the guest) ------------------------------------------------

def _detached(pyrun, *args, stdout=None, timeout=300):
    """`pyrun run -d` / `restore -d` with stdio a container may keep: /dev/null in, and a pipe
    or a file opened for appending out. (The harness's own files are O_NOFOLLOW temporaries,
    which criu cannot reopen through /proc/self/fd on restore; and criu checks a plain file's
    size unless it is O_WRONLY|O_APPEND, as log files are.)"""
    from tests.conftest import PYRUN
    import tempfile
    with tempfile.NamedTemporaryFile("w+", dir="/tmp", delete=False) as err_name:
        path = err_name.name
    with open(path, "a") as err:
        p = subprocess.run([PYRUN, "--root", pyrun.root, *args], stdin=subprocess.DEVNULL,
                           stdout=stdout if stdout is not None else err, stderr=err, timeout=timeout)
    with open(path) as f:
        p.stderr = f.read()
    os.unlink(path)
    return p


def _wait_stopped(pyrun, cid, timeout=30.0):
    deadline = time.monotonic() + timeout
    while _status(pyrun, cid) != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _status(pyrun, cid) == "stopped"


def _running(pyrun, b, cid="c1") -> None:
    """`run -d` of bundle `b` with stdio a container may keep (see _detached)."""
    p = _detached(pyrun, "run", "-d", "-b", b, cid)
    assert p.returncode == 0, p.stderr


def _running_counter(pyrun, tmp_path, at_least=1, cid="c1") -> str:
    """A COUNTER container `cid`, running and counted up to `at_least`: its bundle."""
    b = _counter(tmp_path)
    _running(pyrun, b, cid)
    _wait_count(b, at_least)
    return b


def _dump(pyrun, img, *flags, cid="c1", log="dump.log") -> None:
    p = pyrun("checkpoint", *flags, "--image-path", img, cid, timeout=300)
    assert p.returncode == 0, p.stderr + _log(os.path.join(img, log))


def _restore(pyrun, b, img, *flags, cid="c2") -> None:
    p = _detached(pyrun, "restore", "-d", "-b", b, "--image-path", img, *flags, cid)
    assert p.returncode == 0, p.stderr + _log(os.path.join(img, "restore.log"))


def test_checkpoint_then_restore_goes_on_counting(criu, tmp_path):
    """The dumped stdout is a pipe: restore hands over its own stdout in its place (runc's
    descriptors.json), so the numbers go on arriving through the new pipe."""
    pyrun = criu
    b = _counter(tmp_path)
    img, work = str(tmp_path / "img"), tmp_path / "work"
    r1, w1 = os.pipe()
    p = _detached(pyrun, "run", "-d", "-b", b, "c1", stdout=w1)
    os.close(w1)
    assert p.returncode == 0, p.stderr
    try:
        _wait_count(b, 3)
        p = pyrun("checkpoint", "--image-path", img, "--work-path", str(work), "c1", timeout=300)
        assert p.returncode == 0, p.stderr + _log(work / "dump.log")
    finally:
        pyrun("delete", "-f", "c1")
    assert pyrun.ids() == []  # without --leave-running the container is gone
    at_dump = _count(b)
    time.sleep(0.5)
    assert _count(b) == at_dump  # nothing counts while it is an image
    before = _drain(r1)
    assert before and before[-1] == at_dump, (before, at_dump)
    with open(os.path.join(img, "descriptors.json")) as f:
        assert json.load(f)[1].startswith("pipe:")
    r2, w2 = os.pipe()
    p = _detached(pyrun, "restore", "-d", "-b", b, "--image-path", img, "--work-path", str(work),
                  "--pid-file", str(tmp_path / "pid"), "c2", stdout=w2)
    os.close(w2)
    assert p.returncode == 0, p.stderr + _log(work / "restore.log")
    try:
        n = _wait_count(b, at_dump + 2)
        assert n < at_dump + 60  # it went on from the dumped value, not from 0 again
        state = json.loads(pyrun("state", "c2", check=True).stdout)
        assert state["status"] == "running"
        assert int((tmp_path / "pid").read_text()) == state["pid"]
        # a normal container afterwards: exec, ps, kill, delete
        out = pyrun("exec", "c2", "cat", "/tmp/n", check=True, timeout=120).stdout
        assert int(out.strip()) >= at_dump
        # its own network namespace is a new one criu made (empty_ns): lo up again, as at create
        out = pyrun("exec", "c2", "busybox", "ip", "-o", "link", "show", "lo", check=True, timeout=120).stdout
        assert "<LOOPBACK,UP," in out, out
        assert state["pid"] in json.loads(pyrun("ps", "--format", "json", "c2", check=True).stdout)
        pyrun("kill", "c2", "KILL", check=True)
        _wait_stopped(pyrun, "c2")
        pyrun("delete", "c2", check=True)
        assert pyrun.ids() == []
    finally:
        pyrun("delete", "-f", "c2")
    after = _drain(r2)
    assert after and after[0] == at_dump + 1, (after[:3], at_dump)  # through the new pipe, in order


def _drain(fd: int) -> list[int]:
    """Every number written to the pipe so far (its writers may still hold it open)."""
    import fcntl
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    data = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    os.close(fd)
    return [int(x) for x in data.split()]


def test_leave_running_keeps_the_container(criu, tmp_path):
    pyrun = criu
    img = str(tmp_path / "img")
    b = _running_counter(pyrun, tmp_path, 2)
    try:
        _dump(pyrun, img, "--leave-running")
        assert _status(pyrun, "c1") == "running"
        n = _count(b)
        assert _wait_count(b, n + 3) > n
    finally:
        pyrun("delete", "-f", "c1")
    # the image restores too; --auto-dedup reaches criu: it punches each page it restored
    # out of the image (the file keeps its size, not its blocks)
    full = _page_blocks(img)
    assert full > 0
    _restore(pyrun, b, img, "--auto-dedup")
    try:
        assert _status(pyrun, "c2") == "running"
        assert _page_blocks(img) < full // 4, (_page_blocks(img), full)
    finally:
        pyrun("delete", "-f", "c2")


def _page_blocks(img: str) -> int:
    return sum(os.stat(os.path.join(img, f)).st_blocks for f in os.listdir(img) if f.startswith("pages-"))


def test_pre_dump_then_dump_with_parent_path(criu, tmp_path):
    pyrun = criu
    parent, img = str(tmp_path / "parent"), str(tmp_path / "img")
    b = _running_counter(pyrun, tmp_path, 2)
    try:
        _dump(pyrun, parent, "--pre-dump", log="pre-dump.log")
        assert _status(pyrun, "c1") == "running"  # a pre-dump leaves it running
        assert not os.path.exists(os.path.join(parent, "descriptors.json"))
        n = _count(b)
        _wait_count(b, n + 2)
        _dump(pyrun, img, "--parent-path", "../parent")
    finally:
        pyrun("delete", "-f", "c1")
    assert os.path.realpath(os.path.join(img, "parent")) == os.path.realpath(parent)  # criu linked them
    at_dump = _count(b)
    _restore(pyrun, b, img)
    try:
        assert _wait_count(b, at_dump + 2) < at_dump + 60
    finally:
        pyrun("delete", "-f", "c2")


def test_restore_in_the_foreground_passes_the_exit_status_on(criu, tmp_path):
    """Without -d restore waits, as run does: the container's status is its own, and the
    container is gone afterwards."""
    pyrun = criu
    img = str(tmp_path / "img")
    b = _running_counter(pyrun, tmp_path)
    try:
        _dump(pyrun, img)
    finally:
        pyrun("delete", "-f", "c1")
    from tests.conftest import PYRUN
    # like _detached's files: criu checks that the file put in place has the dumped one's mode
    with os.fdopen(os.open(tmp_path / "out", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a") as out:
        fg = subprocess.Popen([PYRUN, "--root", pyrun.root, "restore", "-b", b, "--image-path", img, "c2"],
                              stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 300
        while _status(pyrun, "c2") != "running" and time.monotonic() < deadline and fg.poll() is None:
            time.sleep(0.1)
        assert _status(pyrun, "c2") == "running", (tmp_path / "out").read_text()
        pyrun("kill", "c2", "KILL", check=True)
        assert fg.wait(timeout=60) == 137
        assert pyrun.ids() == []
    finally:
        fg.kill()
        pyrun("delete", "-f", "c2")


def test_restore_refuses_an_id_in_use(criu, tmp_path):
    pyrun = criu
    img = str(tmp_path / "img")
    b = _running_counter(pyrun, tmp_path)
    try:
        pyrun("pause", "c1", check=True)  # runc checkpoints a paused container too; it stays paused
        _dump(pyrun, img, "--leave-running")
        assert _status(pyrun, "c1") == "paused"
        pyrun("resume", "c1", check=True)
        one_line_error(_detached(pyrun, "restore", "-d", "-b", b, "--image-path", img, "c1"), "c1")
        assert _status(pyrun, "c1") == "running"
    finally:
        pyrun("delete", "-f", "c1")


def test_a_terminal_comes_back_over_the_console_socket(criu, tmp_path):
    """process.terminal: criu restores the pty and hands its new master over (orphan-pts-master),
    which restore sends to --console-socket as create does."""
    from tests.support.checks import fd_listener, receive_fd
    pyrun = criu
    b = _counter(tmp_path)
    config = read_config(b)
    config["process"]["terminal"] = True  # a session of its own comes with the terminal
    config["process"]["args"] = ["sh", "-c", "i=0; while :; do (echo $i > /tmp/n); echo tick$i; i=$((i+1)); sleep 0.1; done"]
    write_config(b, config)
    img = str(tmp_path / "img")
    srv1 = fd_listener(str(tmp_path / "c1.sock"))
    srv1.settimeout(300)
    assert _detached(pyrun, "run", "-d", "--console-socket", str(tmp_path / "c1.sock"), "-b", b, "c1").returncode == 0
    _, master1 = receive_fd(srv1)
    try:
        _wait_count(b, 2)
        _dump(pyrun, img)
    finally:
        pyrun("delete", "-f", "c1")
        os.close(master1)
    at_dump = _count(b)
    srv2 = fd_listener(str(tmp_path / "c2.sock"))
    srv2.settimeout(300)
    from tests.conftest import PYRUN
    restore = subprocess.Popen([PYRUN, "--root", pyrun.root, "restore", "-d", "--console-socket", str(tmp_path / "c2.sock"),
                                "-b", b, "--image-path", img, "c2"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        msg, master2 = receive_fd(srv2)
        _, err = restore.communicate(timeout=300)
        assert restore.returncode == 0, err.decode() + _log(os.path.join(img, "restore.log"))
        seen = b""
        deadline = time.monotonic() + 60
        while b"tick%d" % (at_dump + 2) not in seen and time.monotonic() < deadline:
            seen += os.read(master2, 4096)
        assert b"tick%d" % (at_dump + 2) in seen, seen[-200:]  # the restored shell, on the new pty
        os.close(master2)
    finally:
        restore.kill()
        pyrun("delete", "-f", "c2")


# -- the flags that change what criu may dump (guest) -------------------------------------------

def _with_flock(rootfs: str) -> None:
    """util-linux's flock and what it links, into a busybox rootfs (busybox has no flock)."""
    out = subprocess.run(["ldd", "/usr/bin/flock"], capture_output=True, text=True, check=True).stdout
    for path in [w for line in out.splitlines() for w in line.split() if w.startswith("/")] + ["/usr/bin/flock"]:
        dest = os.path.join(rootfs, "bin/flock" if path == "/usr/bin/flock" else path.lstrip("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(path, dest)


def _locked(path: str) -> bool:
    """Whether someone holds a flock on `path` (asked from here: a flock is the inode's)."""
    return subprocess.run(["flock", "-n", path, "true"]).returncode != 0


def test_file_locks_need_the_flag_and_come_back_held(criu, tmp_path):
    """A lock held by the container: criu refuses to dump it without --file-locks (the
    container runs on, its lock still held); with it the lock is dumped and taken again."""
    pyrun = criu
    b = make_bundle(str(tmp_path / "b"), args=["flock", "/tmp/lock", "sleep", "100000"],
                    root={"path": "rootfs", "readonly": False})
    _with_flock(os.path.join(b, "rootfs"))
    lock = os.path.join(b, "rootfs", "tmp", "lock")
    img = str(tmp_path / "img")
    _running(pyrun, b)
    deadline = time.monotonic() + 60
    while not (os.path.exists(lock) and _locked(lock)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _locked(lock)
    line = one_line_error(pyrun("checkpoint", "--image-path", img, "c1", timeout=300), "criu dump failed",
                          "--file-locks", "dump.log")
    assert "file locks" in line
    assert _status(pyrun, "c1") == "running" and _locked(lock)  # criu let it go, the lock with it
    _dump(pyrun, img, "--file-locks")
    assert pyrun.ids() == [] and not _locked(lock)
    _restore(pyrun, b, img, "--file-locks")
    assert _locked(lock)
    p = pyrun("exec", "c2", "flock", "-n", "/tmp/lock", "true", timeout=120)
    assert p.returncode == 1, (p.returncode, p.stderr)  # held in the restored container, not free
    assert pyrun("exec", "c2", "flock", "-n", "/tmp/other", "true", timeout=120).returncode == 0
    pyrun("delete", "-f", "c2", check=True)
    assert not _locked(lock)


# Over lo, inside the container: a listener writes what it receives to /tmp/got, a client
# sends it a number every 0.1 s (connecting again until the listener is up). The listener's
# stdin never ends (busybox nc half-closes the connection on its stdin's EOF).
TCP_PAIR = ["/bin/sh", "-c", "(sleep 100000 | nc -l -p 5000 >> /tmp/got) & "
            "while :; do (i=0; while :; do echo $i; i=$((i+1)); sleep 0.1; done) | nc 127.0.0.1 5000; sleep 0.2; done"]


def _received(b: str) -> int:
    try:
        with open(os.path.join(b, "rootfs", "tmp", "got")) as f:
            numbers = f.read().split("\n")[:-1]  # the last line may be cut
    except FileNotFoundError:
        return -1
    return int(numbers[-1]) if numbers and numbers[-1].isdigit() else -1


def _wait_received(b: str, at_least: int, timeout=60.0) -> int:
    deadline = time.monotonic() + timeout
    while _received(b) < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _received(b) >= at_least, (_received(b), at_least)
    return _received(b)


@pytest.fixture
def netns_with_lo(tmp_path):
    """A network namespace with lo up, held by a process: a path for linux.namespaces, as
    Podman and CRI-O give one (criu declares it external and restores into it)."""
    holder = subprocess.Popen(["unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep 100000"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "up"
        yield f"/proc/{holder.pid}/ns/net"
    finally:
        holder.kill()
        holder.wait()


def test_tcp_established_needs_the_flag_and_the_connection_carries_on(criu, tmp_path, netns_with_lo):
    pyrun = criu
    b = make_bundle(str(tmp_path / "b"), args=TCP_PAIR, root={"path": "rootfs", "readonly": False})
    config = read_config(b)
    config["linux"]["namespaces"] = [ns if ns["type"] != "network" else {"type": "network", "path": netns_with_lo}
                                     for ns in config["linux"]["namespaces"]]
    write_config(b, config)
    img = str(tmp_path / "img")
    _running(pyrun, b)
    n = _wait_received(b, 3)
    line = one_line_error(pyrun("checkpoint", "--image-path", img, "c1", timeout=300), "criu dump failed",
                          "--tcp-established", "dump.log")
    assert "TCP" in line
    assert _status(pyrun, "c1") == "running"
    n = _wait_received(b, n + 3)  # criu let the connection go on
    _dump(pyrun, img, "--tcp-established")
    assert pyrun.ids() == []
    at_dump = _received(b)
    # restore must be told too: without the flag criu refuses the image, and nothing is left
    one_line_error(_detached(pyrun, "restore", "-d", "-b", b, "--image-path", img, "c2"), "criu restore failed",
                   "TCP", "restore.log")
    assert pyrun.ids() == []
    _restore(pyrun, b, img, "--tcp-established")
    rules = subprocess.run(["nsenter", f"--net={netns_with_lo}", "iptables-save"], capture_output=True, text=True).stdout
    assert "CRIU" not in rules, rules  # criu's network lock is gone
    n = _wait_received(b, at_dump + 3)  # the same connection: the numbers go on, not from 0
    with open(os.path.join(b, "rootfs", "tmp", "got")) as f:
        assert f.read().split().count("0") == 1, "the client connected again"
    pyrun("delete", "-f", "c2", check=True)


def _cgroup_of(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return next(line.rstrip("\n").split(":", 2)[2] for line in f if line.startswith("0::"))


# criu's own values of each mode (cr_options.h CG_MODE_*), as restore.log prints them; with
# ignore criu leaves cgroups alone and prints nothing
CG_MODE_LOGGED = {"soft": "0x4", "full": "0x8", "strict": "0x10", "ignore": None}


def _cgroup_yard(img: str) -> list[str]:
    with open(os.path.join(img, "restore.log")) as f:
        return [line.split("cgroups restore mode ", 1)[1].rstrip(")\n") for line in f if "cgroups restore mode" in line]


@pytest.mark.parametrize("mode", ["soft", "full", "strict", "ignore"])
def test_manage_cgroups_mode_reaches_criu_and_the_container_is_in_its_cgroup(criu, tmp_path, mode):
    """Each mode as criu's log names it. The container's cgroup is made (its limits written,
    criu put in it) before criu runs, as runc makes it: strict, which wants every cgroup of
    the image new, refuses it in one line and restore leaves nothing behind."""
    pyrun = criu
    img = str(tmp_path / "img")
    b = _running_counter(pyrun, tmp_path)
    _dump(pyrun, img, "--manage-cgroups-mode", mode)
    if mode == "strict":
        one_line_error(_detached(pyrun, "restore", "-d", "-b", b, "--image-path", img, "--manage-cgroups-mode", mode, "c2"),
                       "criu restore failed", "existing cgroups", "restore.log")
        assert _cgroup_yard(img) == [CG_MODE_LOGGED[mode]]
        assert pyrun.ids() == [] and not os.path.exists("/sys/fs/cgroup/c2")
        return
    _restore(pyrun, b, img, "--manage-cgroups-mode", mode)
    assert _cgroup_yard(img) == ([CG_MODE_LOGGED[mode]] if CG_MODE_LOGGED[mode] else [])
    with open(os.path.join(pyrun.root, "c2", "state.json")) as f:
        record = json.load(f)
    cdir = record["cgroup"]["dirs"][""]
    pid = record["pid"]
    with open(os.path.join(cdir, "cgroup.procs")) as f:
        assert str(pid) in f.read().split()
    assert "/sys/fs/cgroup" + _cgroup_of(pid) == cdir
    assert _wait_count(b, _count(b) + 2)
    pyrun("delete", "-f", "c2", check=True)
    assert not os.path.exists(cdir)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_page_server_takes_the_pages(criu, tmp_path):
    """--page-server: the pages go to criu's page server (the other machine's side, run
    here), the rest into --image-path; put together, the images restore. Nothing listening
    there: one line, and the container runs on."""
    pyrun = criu
    img, served = str(tmp_path / "img"), tmp_path / "served"
    served.mkdir()
    b = _running_counter(pyrun, tmp_path)
    line = one_line_error(pyrun("checkpoint", "--page-server", f"127.0.0.1:{_free_port()}", "--image-path", img, "c1",
                                timeout=300), "criu dump failed", "dump.log")
    assert _status(pyrun, "c1") == "running", line
    port = _free_port()
    subprocess.run(["criu", "page-server", "-d", "--images-dir", str(served), "--address", "127.0.0.1",
                    "--port", str(port), "--log-file", "page-server.log"], check=True, timeout=120)
    _dump(pyrun, img, "--page-server", f"127.0.0.1:{port}")
    assert _page_blocks(str(served)) > 0 and not any(f.startswith("pages-") for f in os.listdir(img))
    for f in os.listdir(served):
        if f.endswith(".img"):
            shutil.copy(served / f, img)
    at_dump = _count(b)
    _restore(pyrun, b, img)
    assert _wait_count(b, at_dump + 2) < at_dump + 60
    pyrun("delete", "-f", "c2", check=True)


def test_ext_unix_sk_lets_criu_dump_and_restore_a_socket_to_outside(criu, tmp_path):
    """The init's stdout a datagram socket connected to ours, as a program's to /dev/log:
    an external socket, which criu dumps (by its peer's name) only with --ext-unix-sk, and
    restores connected to that name again.
    (criu dumps no external stream socket, flag or not.) The host's network namespace,
    where criu finds our socket."""
    import socket
    pyrun = criu
    img = str(tmp_path / "img")
    b = _counter(tmp_path)
    config = read_config(b)
    config["linux"]["namespaces"] = [ns for ns in config["linux"]["namespaces"] if ns["type"] != "network"]
    # criu connects the restored socket from inside the container: its peer's name must be
    # there too, as a bound-in /dev/log is
    where = tmp_path / "sockets"
    where.mkdir()
    config["mounts"].append({"destination": str(where), "type": "bind", "source": str(where), "options": ["rbind"]})
    write_config(b, config)
    ours = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.bind(str(where / "log.sock"))
    ours.settimeout(60)
    theirs = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    theirs.connect(str(where / "log.sock"))
    p = _detached(pyrun, "run", "-d", "-b", b, "c1", stdout=theirs.fileno())
    theirs.close()
    assert p.returncode == 0, p.stderr
    _wait_count(b, 2)
    one_line_error(pyrun("checkpoint", "--leave-running", "--image-path", img, "c1", timeout=300), "criu dump failed",
                   "--ext-unix-sk", "dump.log")
    assert _status(pyrun, "c1") == "running"
    _dump(pyrun, img, "--leave-running", "--ext-unix-sk")
    assert _status(pyrun, "c1") == "running"
    n = _count(b)
    while int(ours.recv(64)) < n + 2:
        pass  # still writing to us
    pyrun("delete", "-f", "c1", check=True)
    # and back: criu connects the restored socket to our name again, with the flag on restore too
    ours.settimeout(0.3)
    try:
        while ours.recv(64):
            pass  # what c1 wrote before it went
    except TimeoutError:
        pass
    ours.settimeout(60)
    p = _detached(pyrun, "restore", "-d", "-b", b, "--image-path", img, "--ext-unix-sk", "c2")
    assert p.returncode == 0, p.stderr + _log(os.path.join(img, "restore.log"))
    try:
        first = int(ours.recv(64))
        assert first < n + 60  # from the dumped count on, not from 0 again
        assert int(ours.recv(64)) == first + 1
    finally:
        ours.close()
        pyrun("delete", "-f", "c2", check=True)

def test_podman_checkpoint_and_restore_through_pyrun(criu, tmp_path):
    """Podman's own calls (checkpoint --image-path --work-path; restore through conmon): the
    container goes on counting in `podman logs`. --network none: the guest has no bridge."""
    from tests.conftest import PYRUN
    from tests.orchestrators import podman as ph
    why = ph.missing()
    if why:
        pytest.skip(why)
    import tempfile
    top = tempfile.mkdtemp(prefix="pmck-", dir="/tmp")  # Podman wants a runroot under 50 characters
    pm = ph.Podman(top, PYRUN)

    def numbers() -> list[int]:
        return [int(x) for x in pm("logs", "cp", timeout=120).stdout.split() if x.isdigit()]

    def wait_numbers(at_least: int) -> list[int]:
        deadline = time.monotonic() + 120
        while len(numbers()) < at_least and time.monotonic() < deadline:
            time.sleep(0.5)
        return numbers()
    try:
        pm.import_busybox()
        pm("run", "-d", "--network", "none", "--name", "cp", "--ulimit", "nofile=1024:1024",
           "--ulimit", "nproc=1024:1024", ph.IMAGE, *COUNTER, timeout=300)
        assert len(wait_numbers(3)) >= 3
        pm("container", "checkpoint", "cp", timeout=300)
        assert pm.inspect("cp", "{{.State.Status}}") == "exited"
        before = numbers()
        pm("container", "restore", "cp", timeout=300)
        assert pm.inspect("cp", "{{.State.Status}}") == "running"
        after = wait_numbers(len(before) + 3)
        assert after[:len(before)] == before and after[len(before)] == before[-1] + 1, (before, after)
    finally:
        pm.teardown()
        shutil.rmtree(top, ignore_errors=True)


def _log(path) -> str:
    """What criu logged before its first error: enough to see why, in the assertion."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    first = next((i for i, line in enumerate(lines) if "Error" in line), len(lines))
    return "\n--- " + str(path) + "\n" + "\n".join(lines[max(0, first - 15):first + 3])
