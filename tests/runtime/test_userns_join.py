"""A user namespace joined at a path (linux.namespaces `{"type": "user", "path": …}`): every
namespace the config asks to be new is made after joining it, so that it owns them (runc's
nsexec order). The holder is a process `unshare --user --map-root-user` made, as the
conformance case makes it: its user namespace maps its root to the host's."""
import fcntl
import json
import os
import shutil
import subprocess
import time

import pytest

from tests.support.bundle import read_config, write_config

NS_GET_USERNS = 0xb701  # _IO(0xb7, 0x1): the user namespace that owns a namespace
NEW_KINDS = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt", "cgroup": "cgroup"}


@pytest.fixture
def holder(root_required):
    if not shutil.which("unshare"):
        pytest.skip("needs unshare(1) (util-linux) to make the user namespace to join")
    p = subprocess.Popen(["unshare", "--user", "--map-root-user", "sleep", "1000"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    end = time.monotonic() + 5
    while _comm(p.pid) != "sleep" and time.monotonic() < end and p.poll() is None:
        time.sleep(0.01)
    if _comm(p.pid) != "sleep":
        p.kill()
        why = p.stderr.read().decode(errors="replace").strip() if p.poll() is not None else "timeout"
        pytest.skip(f"unshare --user --map-root-user failed: {why}")
    yield p.pid
    p.kill()
    p.wait()


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _joining(bundle, holder: int, args, **extra) -> str:
    """A bundle in the holder's user namespace, every other namespace new. The holder maps
    only root: no gid=5 for devpts, and no v1 cgroup mount (a user namespace may not)."""
    b = bundle(args)
    cfg = read_config(b)
    cfg["hostname"] = "joined"
    kinds = {ns["type"] for ns in cfg["linux"]["namespaces"]}
    cfg["linux"]["namespaces"] += [{"type": t} for t in NEW_KINDS if t not in kinds]
    cfg["linux"]["namespaces"].append({"type": "user", "path": f"/proc/{holder}/ns/user"})
    cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/sys/fs/cgroup"]
    for m in cfg["mounts"]:
        if m["destination"] == "/dev/pts":
            m["options"] = [o for o in m["options"] if not o.startswith("gid=")]
    cfg["linux"].update(extra)
    write_config(b, cfg)
    return b


def _ns_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _owner(path: str) -> tuple[int, int]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        owner = fcntl.ioctl(fd, NS_GET_USERNS)
    finally:
        os.close(fd)
    try:
        st = os.fstat(owner)
        return st.st_dev, st.st_ino
    finally:
        os.close(owner)


def _in_userns(userns: tuple[int, int]) -> list[int]:
    """Every live process of the host in that user namespace (a zombie is not: a killed
    init waits for whoever adopted it to reap it)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    if f.read().rpartition(")")[2].split()[0] == "Z":
                        continue
                if _ns_id(f"/proc/{name}/ns/user") == userns:
                    pids.append(int(name))
            except OSError:
                pass
    return pids


def test_new_namespaces_belong_to_the_joined_user_namespace(pyrun, bundle, holder, tmp_path):
    b = _joining(bundle, holder, ["sleep", "1000"])
    pid_file = str(tmp_path / "pid")
    pyrun("create", "-b", b, "--pid-file", pid_file, "u1", check=True)
    state = json.loads(pyrun("state", "u1", check=True).stdout)
    init = state["pid"]
    with open(pid_file) as f:
        assert int(f.read()) == init
    userns = _ns_id(f"/proc/{holder}/ns/user")
    assert _ns_id(f"/proc/{init}/ns/user") == userns
    for kind, link in NEW_KINDS.items():
        theirs = f"/proc/{init}/ns/{link}"
        assert _ns_id(theirs) != _ns_id(f"/proc/self/ns/{link}"), f"{kind} is the host's"
        assert _owner(theirs) == userns, f"the new {kind} namespace is not the joined user namespace's"
    with open(f"/proc/{init}/status") as f:
        nspid = next(line.split()[1:] for line in f if line.startswith("NSpid:"))
    assert nspid == [str(init), "1"]  # the real init: pid 1 of its own pid namespace

    pyrun("start", "u1", check=True)
    out = pyrun("exec", "u1", "sh", "-c", "hostname; echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo;"
                "readlink /proc/self/ns/user; readlink /proc/self/ns/mnt; readlink /proc/self/ns/pid",
                check=True).stdout.splitlines()
    assert out[0] == "joined"
    assert out[1] != "1" and int(out[1]) > 1  # exec's process, in the container's pid namespace
    assert out[2].strip() == "sleep 1000"     # /proc, mounted in the container, is its own
    assert out[3:] == [os.readlink(f"/proc/{init}/ns/{n}") for n in ("user", "mnt", "pid")]
    assert json.loads(pyrun("state", "u1", check=True).stdout)["status"] == "running"

    pyrun("kill", "u1", "KILL", check=True)
    end = time.monotonic() + 5
    while json.loads(pyrun("state", "u1", check=True).stdout)["status"] != "stopped":
        assert time.monotonic() < end, "the init outlived SIGKILL"
        time.sleep(0.05)
    pyrun("delete", "u1", check=True)
    assert pyrun.ids() == []
    assert _in_userns(userns) == [holder]


def test_run_in_the_foreground_waits_for_the_init(pyrun, bundle, holder):
    b = _joining(bundle, holder, ["sh", "-c", "hostname; echo $$; ps -o pid,comm | wc -l; exit 7"])
    p = pyrun("run", "-b", b, "u2")
    assert p.returncode == 7, p.stderr
    # its own hostname, pid 1, and a /proc that shows only the container: a header, sh, ps, wc
    assert p.stdout.split() == ["joined", "1", "4"]
    assert pyrun.ids() == []


def test_a_failing_init_leaves_nothing(pyrun, bundle, holder):
    b = _joining(bundle, holder, ["no-such-program"])
    p = pyrun("create", "-b", b, "u3")
    assert p.returncode != 0
    assert len(p.stderr.strip().splitlines()) == 1 and "no-such-program" in p.stderr, p.stderr
    assert pyrun.ids() == []
    userns = _ns_id(f"/proc/{holder}/ns/user")
    end = time.monotonic() + 2  # the killed init is reaped; nothing of it stays in the namespace
    while _in_userns(userns) != [holder] and time.monotonic() < end:
        time.sleep(0.05)
    assert _in_userns(userns) == [holder]


def test_new_time_namespace_takes_its_offsets(pyrun, bundle, holder):
    if not os.path.exists("/proc/self/ns/time"):
        pytest.skip("this kernel has no time namespaces")
    offsets = {"monotonic": {"secs": 86400 * 365}, "boottime": {"secs": 86400 * 365}}
    b = _joining(bundle, holder, ["sleep", "1000"], timeOffsets=offsets)
    cfg = read_config(b)
    cfg["linux"]["namespaces"].append({"type": "time"})
    write_config(b, cfg)
    pyrun("run", "-d", "-b", b, "u4", check=True)
    init = json.loads(pyrun("state", "u4", check=True).stdout)["pid"]
    assert _owner(f"/proc/{init}/ns/time") == _ns_id(f"/proc/{holder}/ns/user")
    assert _ns_id(f"/proc/{init}/ns/time") != _ns_id("/proc/self/ns/time")
    out = pyrun("exec", "u4", "cat", "/proc/uptime", check=True).stdout
    with open("/proc/uptime") as f:
        host = float(f.read().split()[0])
    assert float(out.split()[0]) - host > 86400 * 364
