"""The host's interpreter is never writable through /proc/<pid>/exe (CVE-2019-5736 class, issue 15).

pyrun's init and its `exec` processes are the host's Python until they execve. A
process in the container that opens /proc/<pid>/exe of one of them (O_PATH) and
keeps the fd can reopen it for writing through /proc/self/fd/N once nothing
executes the file any more. pyrun's #! interpreter, pyrun-launcher, execs Python
from a detached read-only mount, so that reopen fails with EROFS.

The attacks run against a pyrun whose interpreter is a private copy of the venv's
python (a throwaway venv-like tree in tmp_path), never the real one; the attacker
itself checks that what it holds is the copy before it tries to write.
"""
import errno
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time

import pytest

from tests.conftest import BIN, PYRUN
from tests.support.bundle import read_config, write_config

VENV = os.path.dirname(BIN)
VENV_PYTHON = os.path.join(BIN, "python")  # the path pyrun's #! line names

# The attack of issue 15, from inside the container (static: the rootfs is busybox).
# argv[1] is "dev:ino" of the private interpreter copy. It opens /proc/1/exe O_PATH
# until that succeeds; should the init have the same permitted capabilities as this
# process (a default-caps process can reach no other) and still refuse, the init is
# out of reach: "denied <errno>". With the fd held it waits for /tmp/go (the init has
# exec'd, nothing runs the copy: only the mount can refuse a write now), reopens the fd
# for writing and overwrites the file's first bytes.
ATTACKER_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void nap(void) { struct timespec t = {0, 1000000}; nanosleep(&t, 0); }

static void cap_prm(const char *status, char *out, size_t n)
{
    char line[256];
    FILE *f = fopen(status, "r");
    out[0] = 0;
    if (!f)
        return;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "CapPrm:", 7))
            snprintf(out, n, "%s", line + 7);
    fclose(f);
}

int main(int argc, char **argv)
{
    unsigned long dev, ino;
    char mine[64], init[64], path[64];
    struct stat st;
    int fd = -1, w, i;

    if (argc != 2 || sscanf(argv[1], "%lu:%lu", &dev, &ino) != 2)
        return 2;
    cap_prm("/proc/self/status", mine, sizeof mine);
    for (i = 0; fd < 0; i++) {
        int equal;
        if (i == 60000) { puts("timeout opening"); return 1; }
        cap_prm("/proc/1/status", init, sizeof init);
        equal = init[0] && !strcmp(init, mine);
        fd = open("/proc/1/exe", O_PATH | O_CLOEXEC);
        if (fd < 0 && equal) { printf("denied %d\n", errno); return 0; }
        if (fd < 0)
            nap();
    }
    if (fstat(fd, &st) || st.st_dev != dev || st.st_ino != ino) {
        printf("other %lu:%lu\n", (unsigned long)st.st_dev, (unsigned long)st.st_ino);
        return 1;  /* never write what is not the private copy */
    }
    puts("held");
    fflush(stdout);
    for (i = 0; access("/tmp/go", F_OK); i++) {
        if (i == 60000) { puts("timeout waiting"); return 1; }
        nap();
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    w = open(path, O_WRONLY);
    if (w < 0) { printf("reopen %d\n", errno); return 0; }
    if (write(w, "pwned", 5) == 5)
        puts("wrote");
    return 0;
}
"""


@pytest.fixture(scope="module")
def attacker(tmp_path_factory):
    if not shutil.which("gcc"):
        pytest.skip("gcc not installed: the attacker program cannot be built")
    d = tmp_path_factory.mktemp("attacker")
    src, out = d / "attack.c", d / "attack"
    src.write_text(ATTACKER_C)
    p = subprocess.run(["gcc", "-O2", "-static", "-o", str(out), str(src)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"no static libc to build the attacker with (libc6-dev): {p.stderr.strip()[-200:]}")
    return str(out)


def _shebang(script: str) -> list[str]:
    with open(script) as f:
        first = f.readline().rstrip("\n")
    assert first.startswith("#!"), first
    return first[2:].split(" ")


def _launcher() -> str:
    words = _shebang(PYRUN)
    if os.path.basename(words[0]) != "pyrun-launcher":
        pytest.fail(f"{PYRUN} is not run through pyrun-launcher (#!{' '.join(words)}): make setup")
    return words[0]


def _private_pyrun(tmp_path) -> tuple[str, str]:
    """(pyrun, interpreter): the installed pyrun, #! line and all, whose interpreter is a
    private copy of the venv's python in a venv-like tree of its own."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    copy = venv / "bin" / "python"
    shutil.copy2(os.path.realpath(VENV_PYTHON), copy)
    shutil.copy(os.path.join(VENV, "pyvenv.cfg"), venv)
    lib = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    lib.mkdir(parents=True)
    (lib / "site-packages").symlink_to(sysconfig.get_paths()["purelib"])
    words = _shebang(PYRUN)
    assert words.count(VENV_PYTHON) == 1, words  # else the copy would not be what runs
    with open(PYRUN) as f:
        body = f.read().split("\n", 1)[1]
    script = venv / "bin" / "pyrun"
    script.write_text("#!" + " ".join(str(copy) if w == VENV_PYTHON else w for w in words) + "\n" + body)
    script.chmod(0o755)
    return str(script), str(copy)


def _ident(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _wait_for(what: str, cond, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.01)


@pytest.mark.parametrize("caps", [(), ("--cap", "CAP_SYS_PTRACE")], ids=["default-caps", "cap-sys-ptrace"])
def test_init_exe_held_from_inside_cannot_be_reopened_for_write(pyrun, bundle, tmp_path, attacker, caps):
    """Issue 15's attack: a process exec'd into the `created` container holds /proc/1/exe
    (O_PATH) across `start` and reopens it for writing once the init has exec'd.

    A default-caps process reaches the init only once it has dropped to the container's
    capabilities, just before execve: a seccomp agent that reads the init's (large)
    message slowly holds it there. With CAP_SYS_PTRACE it reaches it while `created`."""
    private, interpreter = _private_pyrun(tmp_path)
    before = _sha256(interpreter)
    agent_path = str(tmp_path / "agent.sock")
    agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    agent.bind(agent_path)
    agent.listen(1)
    agent.settimeout(30)
    b = bundle(["sleep", "1000"], private_rootfs=True)
    cfg = read_config(b)
    cfg["process"]["noNewPrivileges"] = True  # the filter loads after the capabilities drop
    # Larger than the init's socket send buffer: its send blocks until the agent reads.
    with open("/proc/sys/net/core/wmem_default") as f:
        hold = max(2 * int(f.read()), 1 << 19)
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": agent_path,
                               "listenerMetadata": "x" * hold,
                               "syscalls": [{"names": ["acct"], "action": "SCMP_ACT_NOTIFY"}]}
    write_config(b, cfg)
    shutil.copy(attacker, os.path.join(b, "rootfs", "bin", "attack"))
    report = tmp_path / "attack.out"

    def p(*args, stdout=subprocess.DEVNULL):
        with open(tmp_path / "pyrun.err", "w+") as err:  # a file: the init keeps what it inherits
            r = subprocess.run([private, "--root", pyrun.root, *args], stdin=subprocess.DEVNULL,
                               stdout=stdout, stderr=err, text=True, timeout=60)
            err.seek(0)
            assert r.returncode == 0, f"pyrun {args[0]}: {err.read()}"
        return r

    p("create", "-b", b, "seal1")
    with open(tmp_path / "state.json", "w+") as out:
        p("state", "seal1", stdout=out)
        out.seek(0)
        init = json.load(out)["pid"]
    assert _ident(f"/proc/{init}/exe") == _ident(interpreter)  # the init runs the copy
    with open(report, "w") as out:
        p("exec", "-d", *caps, "seal1", "/bin/attack", _ident(interpreter), stdout=out)
    if caps:  # reached while `created`
        assert _wait_for("the attacker's first report", report.read_text) == "held\n"
    p("start", "seal1")
    conn, _ = agent.accept()
    _wait_for("the attacker's first report", report.read_text)
    with conn:  # let the init go on to execve
        while True:
            data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 4)
            for fd in fds:
                os.close(fd)
            if not data:
                break
    agent.close()
    _wait_for("the init's execve", lambda: _ident(f"/proc/{init}/exe") != _ident(interpreter))
    open(os.path.join(b, "rootfs", "tmp", "go"), "w").close()
    _wait_for("the attacker's verdict", lambda: not report.read_text().endswith("held\n"))
    lines = report.read_text().splitlines()
    assert _sha256(interpreter) == before, f"the interpreter copy was overwritten: {lines}"
    if caps or lines[0] != f"denied {errno.EACCES}":  # denied: the init is out of reach, also fine
        assert lines == ["held", f"reopen {errno.EROFS}"], lines


def _init_of(pyrun, bundle, cid: str) -> int:
    pyrun("create", "-b", bundle(["sleep", "1000"]), cid, check=True)
    return json.loads(pyrun("state", cid, check=True).stdout)["pid"]


def _mount_ids(pid) -> set[str]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return {line.split()[0] for line in f}


def _mnt_id(path: str) -> str:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            return next(line.split()[1] for line in f if line.startswith("mnt_id:"))
    finally:
        os.close(fd)


def test_init_exe_is_on_a_detached_read_only_mount(pyrun, bundle):
    """The init's exe is the venv's interpreter (same file), on a read-only, nosuid,
    nodev mount that is in no mount namespace: neither ours nor the container's."""
    real = os.path.realpath(VENV_PYTHON)
    if os.statvfs(real).f_flag & os.ST_RDONLY:
        pytest.skip(f"{real} is on a read-only mount already: a sealed exe looks no different")
    init = _init_of(pyrun, bundle, "seal2")
    exe = f"/proc/{init}/exe"
    assert _ident(exe) == _ident(real)
    flags = os.statvfs(exe).f_flag
    assert flags & os.ST_RDONLY and flags & os.ST_NOSUID and flags & os.ST_NODEV, hex(flags)
    mnt = _mnt_id(exe)
    assert mnt != _mnt_id(real)
    assert mnt not in _mount_ids("self") and mnt not in _mount_ids(init)


def _comm(pid: int) -> str:
    return subprocess.run(["ps", "-o", "comm=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()


def test_pyrun_processes_are_named_pyrun(pyrun, bundle):
    """execveat(AT_EMPTY_PATH) names a process after the exec'd file: the runtime, and
    the init it clones, still show as `pyrun` to ps, pgrep and the like."""
    init = _init_of(pyrun, bundle, "seal3")
    assert _comm(init) == "pyrun"
    fg = subprocess.Popen([PYRUN, "--root", pyrun.root, "run", "-b", bundle(["sleep", "1000"]), "seal4"],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for("the foreground container runs", lambda: "running" in pyrun("state", "seal4").stdout)
        assert _comm(fg.pid) == "pyrun"
        assert os.statvfs(f"/proc/{fg.pid}/exe").f_flag & os.ST_RDONLY
    finally:
        pyrun("kill", "seal4", "KILL")
        fg.wait(30)


_PROBE = ("import os, sys; print(sys.executable, sys.flags.isolated, sys.flags.no_site, sys.prefix, "
          "sys.argv[1:], bool(os.statvfs('/proc/self/exe').f_flag & os.ST_RDONLY))")


def test_launcher_hands_the_interpreter_its_venv_path_and_flags(root_required):
    launcher = _launcher()
    out = subprocess.run([launcher, f"{VENV_PYTHON} -IS", "-c", _PROBE, "a b", "c"],
                         capture_output=True, text=True, check=True).stdout.split(" ", 4)
    assert out == [VENV_PYTHON, "1", "1", sys.base_prefix, "['a b', 'c'] True\n"]
    # no flags: site runs and, from the interpreter's own path, finds the venv
    out = subprocess.run([launcher, VENV_PYTHON, "-c", _PROBE],
                         capture_output=True, text=True, check=True).stdout.split(" ", 4)
    assert out == [VENV_PYTHON, "0", "0", VENV, "[] True\n"]


def test_launcher_refuses_a_bare_shebang():
    launcher = _launcher()
    for argv in ([launcher], [launcher, PYRUN], [launcher, "", PYRUN]):
        p = subprocess.run(argv, capture_output=True, text=True)
        assert p.returncode == 126 and len(p.stderr.splitlines()) == 1, (argv, p.stderr)


def test_launcher_without_mount_rights_execs_plainly(root_required):
    """Where open_tree is refused (no CAP_SYS_ADMIN: an unprivileged user) the interpreter
    still runs, from its own mount (rootless pyrun is unsealed: issue 15 notes it)."""
    launcher = _launcher()

    def nobody():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    p = subprocess.run([launcher, f"{VENV_PYTHON} -IS", "-c", _PROBE], capture_output=True, text=True,
                       preexec_fn=nobody, cwd="/")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split(" ", 4) == [VENV_PYTHON, "1", "1", sys.base_prefix, "[] False\n"]
