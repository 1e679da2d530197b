"""runtime.seccomp against the real kernel.

Every filter is loaded in a forked child (a filter cannot be removed), which then tries
syscalls and reports what happened over a pipe; the parent checks the report or how the
child died. The profiles are written here, except Podman's default, which is what
Podman 4.3 itself put in a container's config.json (tests/runtime/seccomp_profiles/).
"""
import ctypes
import errno
import json
import os
import select
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from runtime import seccomp

PROFILES = Path(__file__).parent / "seccomp_profiles"
LIBC = ctypes.CDLL(None, use_errno=True)
X32_BIT = 0x40000000


def in_child(profile, body, *, cache_dir=None, before_load=None):
    """Compile+load `profile` in a fork, run body(); returns (report, wait status)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        report = {}
        try:
            os.close(r)
            import resource
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # TRAP/KILL dump no core
            flt = seccomp.compile(profile, cache_dir=cache_dir)
            if before_load:
                before_load()
            report["listener"] = flt.load()
            report.update(body(report["listener"]) or {})
        except BaseException as e:  # everything goes back to the test
            report["exception"] = f"{type(e).__name__}: {e}"
        os.write(w, json.dumps(report).encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    return (json.loads(data) if data else None), status


def errno_of(call, *args):
    try:
        call(*args)
    except OSError as e:
        return e.errno
    return 0


def raw_syscall(nr, *args):
    ctypes.set_errno(0)
    ret = LIBC.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return ctypes.get_errno() if ret == -1 else 0


def allow_with(*rules, **extra):
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(rules), **extra}


def killed_by(status):
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else None


# --- actions and errno -------------------------------------------------------------

def test_mkdir_fails_with_the_configured_errno_ret(tmp_path):
    profile = allow_with({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": errno.EXDEV})

    def body(_):
        status = Path("/proc/self/status").read_text()
        return {"mkdir": errno_of(os.mkdir, tmp_path / "d"),
                "seccomp": [ln for ln in status.splitlines() if ln.startswith("Seccomp:")],
                "nnp": [ln for ln in status.splitlines() if ln.startswith("NoNewPrivs:")]}

    report, status = in_child(profile, body)
    assert report.get("exception") is None
    assert report["mkdir"] == errno.EXDEV
    assert not (tmp_path / "d").exists()
    assert report["seccomp"] == ["Seccomp:\t2"]
    # loaded as root without no_new_privs, as runc does when noNewPrivileges is false
    assert report["nnp"] == ["NoNewPrivs:\t0"]
    assert report["listener"] == -1


def test_errno_without_errno_ret_is_eperm(tmp_path):
    profile = allow_with({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"})
    report, _ = in_child(profile, lambda _: {"mkdir": errno_of(os.mkdir, tmp_path / "d")})
    assert report["mkdir"] == errno.EPERM


def test_default_errno_ret_applies_to_unlisted_syscalls(tmp_path):
    # Just what Python needs to report back and exit; mkdir is not on the list.
    needed = ["write", "exit", "exit_group", "brk", "mmap", "munmap", "mremap", "madvise",
              "rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "futex", "getpid", "gettid"]
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.ENXIO,
               "syscalls": [{"names": needed, "action": "SCMP_ACT_ALLOW"}]}
    report, status = in_child(profile, lambda _: {"mkdir": errno_of(os.mkdir, tmp_path / "d"),
                                                   "pid": os.getpid()})
    assert report["mkdir"] == errno.ENXIO
    assert report["pid"] > 0
    assert not (tmp_path / "d").exists()


def test_log_allows_and_trace_without_tracer_is_enosys(tmp_path):
    profile = allow_with({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_LOG"},
                         {"names": ["rmdir"], "action": "SCMP_ACT_TRACE"})
    report, _ = in_child(profile, lambda _: {"mkdir": errno_of(os.mkdir, tmp_path / "d"),
                                             "rmdir": errno_of(os.rmdir, tmp_path / "d")})
    assert report["mkdir"] == 0
    assert report["rmdir"] == errno.ENOSYS  # the kernel's answer when no tracer attaches
    assert (tmp_path / "d").is_dir()


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD",
                                    "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"])
def test_kill_and_trap_end_the_process_with_sigsys(action):
    profile = allow_with({"names": ["getppid"], "action": action})
    report, status = in_child(profile, lambda _: {"ppid": os.getppid()})
    assert report is None
    assert killed_by(status) == signal.SIGSYS


@pytest.mark.parametrize("architectures,newer", [(["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"],
                                                  errno.ENOSYS), ([], errno.EPERM)])
def test_syscalls_newer_than_the_profile_get_enosys(tmp_path, architectures, newer):
    if os.uname().machine != "x86_64":
        pytest.skip("x86_64 architecture names")
    needed = ["write", "exit", "exit_group", "brk", "mmap", "munmap", "mremap", "madvise",
              "rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "futex", "getpid", "gettid"]
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": architectures,
               "syscalls": [{"names": needed, "action": "SCMP_ACT_ALLOW"}]}
    mkdir = seccomp.syscall_number("mkdir")
    assert mkdir < max(seccomp.syscall_number(n) for n in needed)
    x32 = "SCMP_ARCH_X32" in architectures  # else an x32 call is a foreign ABI: killed
    report, _ = in_child(profile, lambda _: {
        "mkdir": errno_of(os.mkdir, tmp_path / "d"), "new": raw_syscall(1023),
        "new x32": raw_syscall(X32_BIT | 1023) if x32 else None})
    assert report["mkdir"] == errno.EPERM  # older than the profile: the default action
    # runc's rule: only listed architectures get the stub, so [] keeps the default action
    assert report["new"] == newer
    assert report["new x32"] == (newer if x32 else None)


def test_rule_equal_to_default_action_is_skipped():
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EPERM,
               "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
                            {"names": ["write"], "action": "SCMP_ACT_ALLOW"}]}
    assert seccomp.compile(profile).program


def test_unknown_syscall_names_are_skipped_like_runc(tmp_path):
    profile = allow_with({"names": ["no_such_syscall_xyz", "mkdir", "mkdirat"],
                          "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV})
    report, _ = in_child(profile, lambda _: {"mkdir": errno_of(os.mkdir, tmp_path / "d")})
    assert report["mkdir"] == errno.EXDEV


# --- argument comparisons ------------------------------------------------------------
# close(fd) of fds that are not open: a matching rule answers EXDEV, a non-matching one
# lets the kernel answer EBADF.

CLOSE_CASES = [
    ("SCMP_CMP_EQ", 1005, 0, {1004: False, 1005: True, 1006: False}),
    ("SCMP_CMP_NE", 1005, 0, {1004: True, 1005: False, 1006: True}),
    ("SCMP_CMP_LT", 1005, 0, {1004: True, 1005: False, 1006: False}),
    ("SCMP_CMP_LE", 1005, 0, {1004: True, 1005: True, 1006: False}),
    ("SCMP_CMP_GT", 1005, 0, {1004: False, 1005: False, 1006: True}),
    ("SCMP_CMP_GE", 1005, 0, {1004: False, 1005: True, 1006: True}),
    # (fd & 0xF0) == 0x30
    ("SCMP_CMP_MASKED_EQ", 0xF0, 0x30, {0x430: True, 0x440: False, 0x53F: True}),
]


@pytest.mark.parametrize("op,value,value_two,expect", CLOSE_CASES, ids=[c[0] for c in CLOSE_CASES])
def test_argument_operators(op, value, value_two, expect):
    profile = allow_with({"names": ["close"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV,
                          "args": [{"index": 0, "value": value, "valueTwo": value_two, "op": op}]})
    report, _ = in_child(profile, lambda _: {str(fd): errno_of(os.close, fd) for fd in expect})
    assert report.get("exception") is None
    got = {int(fd): e == errno.EXDEV for fd, e in report.items() if fd.isdigit()}
    assert got == expect
    assert {e for fd, e in report.items() if fd.isdigit()} <= {errno.EXDEV, errno.EBADF}


def test_args_on_distinct_indexes_all_must_match():
    # lseek(fd, offset, whence): fd == 1005 AND whence == SEEK_CUR
    profile = allow_with({"names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV,
                          "args": [{"index": 0, "value": 1005, "op": "SCMP_CMP_EQ"},
                                   {"index": 2, "value": os.SEEK_CUR, "op": "SCMP_CMP_EQ"}]})
    report, _ = in_child(profile, lambda _: {
        "both": errno_of(os.lseek, 1005, 0, os.SEEK_CUR),
        "fd_only": errno_of(os.lseek, 1005, 0, os.SEEK_SET),
        "whence_only": errno_of(os.lseek, 1006, 0, os.SEEK_CUR)})
    assert report == {"listener": -1, "both": errno.EXDEV, "fd_only": errno.EBADF,
                      "whence_only": errno.EBADF}


def test_args_on_the_same_index_any_may_match():
    profile = allow_with({"names": ["close"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV,
                          "args": [{"index": 0, "value": 1005, "op": "SCMP_CMP_EQ"},
                                   {"index": 0, "value": 1007, "op": "SCMP_CMP_EQ"}]})
    report, _ = in_child(profile, lambda _: {str(fd): errno_of(os.close, fd)
                                             for fd in (1005, 1006, 1007)})
    assert [report["1005"], report["1006"], report["1007"]] == [errno.EXDEV, errno.EBADF,
                                                                errno.EXDEV]


# --- architectures ---------------------------------------------------------------------

@pytest.mark.skipif(os.uname().machine != "x86_64", reason="x32 syscalls exist on x86_64 only")
def test_architectures_list_admits_x32_and_applies_rules_to_it():
    mkdir_x32 = X32_BIT | 83  # __X32_SYSCALL_BIT | __NR_mkdir (x32 shares x86_64's numbers)
    getpid_x32 = X32_BIT | 39
    path = ctypes.create_string_buffer(b"/nonexistent-dir/seccomp-x32")
    rule = {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV}

    def body(_):
        return {"mkdir": raw_syscall(mkdir_x32, ctypes.addressof(path), 0o755),
                "getpid": raw_syscall(getpid_x32)}

    report, status = in_child(allow_with(rule, architectures=["SCMP_ARCH_X86_64",
                                                              "SCMP_ARCH_X32"]), body)
    assert report is not None, f"x32 syscall killed the child: status {status}"
    assert report["mkdir"] == errno.EXDEV  # the filter's answer, whatever the kernel has
    assert report["getpid"] in (0, errno.ENOSYS)  # ENOSYS: kernel without x32 ABI

    # Without SCMP_ARCH_X32 the same call is from a foreign ABI: killed (bad arch).
    report, status = in_child(allow_with(rule, architectures=["SCMP_ARCH_X86_64"]), body)
    assert report is None
    assert killed_by(status) == signal.SIGSYS


def test_architectures_grow_the_program():
    rule = {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}
    native = seccomp.compile(allow_with(rule)).program
    multi = seccomp.compile(allow_with(rule, architectures=["SCMP_ARCH_X86", "SCMP_ARCH_X86_64",
                                                            "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"]))
    assert len(multi.program) > len(native)


# --- flags -------------------------------------------------------------------------------

def test_tsync_reaches_threads_started_before_load(tmp_path):
    go, done = threading.Event(), threading.Event()
    result = {}

    def other_thread():
        go.wait(10)
        result["mkdir"] = errno_of(os.mkdir, tmp_path / "t")
        done.set()

    def start_thread():
        threading.Thread(target=other_thread, daemon=True).start()

    def body(_):
        go.set()
        done.wait(10)
        return result

    profile = allow_with({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                          "errnoRet": errno.EXDEV}, flags=["SECCOMP_FILTER_FLAG_TSYNC"])
    report, _ = in_child(profile, body, before_load=start_thread)
    assert report.get("mkdir") == errno.EXDEV


def test_log_and_spec_allow_flags_load():
    flags = ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
    profile = allow_with({"names": ["close"], "action": "SCMP_ACT_ERRNO"}, flags=flags)
    report, _ = in_child(profile, lambda _: {"close": errno_of(os.close, 1005)})
    assert report == {"listener": -1, "close": errno.EPERM}


def test_load_without_privilege_says_why():
    def drop_to_nobody():
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)  # drops every capability, no_new_privs still 0

    report, _ = in_child(allow_with(), lambda _: None, before_load=drop_to_nobody)
    assert "Permission denied" in report["exception"]
    assert "noNewPrivileges or CAP_SYS_ADMIN" in report["exception"]


# --- SCMP_ACT_NOTIFY -------------------------------------------------------------------

@pytest.mark.parametrize("connect_first", [False, True], ids=["by-path", "pre-connected"])
def test_notify_sends_listener_and_agent_answers(tmp_path, connect_first):
    sock_path = str(tmp_path / "agent.sock")
    agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    agent.bind(sock_path)
    agent.listen(1)
    agent.settimeout(10)
    state = {"ociVersion": "1.1.0", "id": "ctr1", "status": "creating", "pid": 0,
             "bundle": str(tmp_path), "annotations": {"a": "b"}}
    profile = allow_with({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"},
                         listenerPath=sock_path, listenerMetadata="hello=world",
                         flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"])
    assert seccomp.compile(profile).uses_notify

    early = {}

    def before_load():
        if connect_first:  # as an init that loads after pivot_root would
            early["sock"] = seccomp.connect_listener(sock_path)

    def body(listener):
        seccomp.send_listener(sock_path, listener, state, os.getpid(), "hello=world",
                              sock=early.get("sock"))
        os.close(listener)
        return {"faked": errno_of(os.mkdir, tmp_path / "faked"),
                "denied": errno_of(os.mkdir, tmp_path / "denied"),
                "continued": errno_of(os.mkdir, tmp_path / "continued")}

    result = {}

    def run_child():
        result["report"], result["status"] = in_child(profile, body, before_load=before_load)

    child = threading.Thread(target=run_child)
    child.start()
    try:
        conn, _ = agent.accept()
        with conn:
            msg, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            assert conn.recv(1) == b""  # one message per connection, then closed
        assert len(fds) == 1
        listener = fds[0]
        container_state = json.loads(msg)
        assert container_state["ociVersion"] == "1.1.0"
        assert container_state["fds"] == ["seccompFd"]
        assert container_state["metadata"] == "hello=world"
        assert container_state["state"] == state
        mkdir_nr = seccomp.syscall_number("mkdir")
        answers = [dict(val=0), dict(error=errno.EXDEV), dict(allow=True)]
        for answer in answers:
            ready, _, _ = select.select([listener], [], [], 10)
            assert ready, "no notification within 10 s"
            notif = seccomp.notify_receive(listener)
            assert notif["pid"] == container_state["pid"]
            assert notif["nr"] == mkdir_nr
            seccomp.notify_respond(listener, notif["id"], **answer)
        os.close(listener)
    finally:
        child.join(20)
        agent.close()
    report = result["report"]
    assert report.get("exception") is None, report
    assert report["listener"] >= 0
    assert report["faked"] == 0 and not (tmp_path / "faked").exists()
    assert report["denied"] == errno.EXDEV and not (tmp_path / "denied").exists()
    assert report["continued"] == 0 and (tmp_path / "continued").is_dir()


def test_send_listener_to_a_missing_socket_is_one_line(tmp_path):
    r, w = os.pipe()
    try:
        with pytest.raises(seccomp.SeccompError) as e:
            seccomp.send_listener(str(tmp_path / "nobody.sock"), r, {"ociVersion": "1.1.0"}, 1, "")
    finally:
        os.close(r)
        os.close(w)
    assert "\n" not in str(e.value)
    assert "nobody.sock" in str(e.value) and "No such file" in str(e.value)
    with pytest.raises(seccomp.SeccompError) as e:
        seccomp.connect_listener(str(tmp_path / "nobody.sock"))
    assert str(e.value) == (f"seccomp listenerPath {tmp_path / 'nobody.sock'}: connect: "
                            "No such file or directory")


# --- bad input --------------------------------------------------------------------------

BAD = [
    ({"defaultAction": "SCMP_ACT_FOO"}, "linux.seccomp.defaultAction: unknown action 'SCMP_ACT_FOO'"),
    ({}, "linux.seccomp.defaultAction: is required"),
    ({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}, "cannot be the default action"),
    (allow_with({"names": ["mkdir"], "action": "SCMP_ACT_BAR"}),
     "linux.seccomp.syscalls[0].action: unknown action 'SCMP_ACT_BAR'"),
    (allow_with({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}),
     "linux.seccomp.syscalls[0].args[0].op: unknown operator 'SCMP_CMP_ABOUT'"),
    (allow_with({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}),
     "linux.seccomp.syscalls[0].args[0].index: must be an integer from 0 to 5, not 6"),
    (allow_with({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
                 "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}),
     "linux.seccomp.syscalls[0].args[0].value: must be an integer"),
    (allow_with(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]),
     "linux.seccomp.architectures[1]: unknown architecture 'SCMP_ARCH_Z80'"),
    (allow_with(flags=["SECCOMP_FILTER_FLAG_BOGUS"]),
     "linux.seccomp.flags[0]: unknown flag 'SECCOMP_FILTER_FLAG_BOGUS'"),
    (allow_with({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}),
     "linux.seccomp.listenerPath: is required when SCMP_ACT_NOTIFY is used"),
    (allow_with({"names": ["write"], "action": "SCMP_ACT_NOTIFY"}, listenerPath="/x"),
     "SCMP_ACT_NOTIFY cannot be used for the write syscall"),
    (allow_with({"names": [], "action": "SCMP_ACT_ERRNO"}), "linux.seccomp.syscalls[0].names:"),
    (allow_with({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}),
     "linux.seccomp.syscalls[0].errnoRet: must be an integer from 0 to 65535, not 70000"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "EPERM"},
     "linux.seccomp.defaultErrnoRet: must be an integer"),
    ("SCMP_ACT_ALLOW", "linux.seccomp: must be an object"),
]


@pytest.mark.parametrize("profile,message", BAD, ids=[m[:40] for _, m in BAD])
def test_bad_input_is_one_line_naming_the_thing(profile, message):
    with pytest.raises(seccomp.SeccompError) as e:
        seccomp.compile(profile)
    text = str(e.value)
    assert "\n" not in text
    assert message in text


# --- Podman's default profile, and the cache ---------------------------------------------

def podman_default():
    return json.loads((PROFILES / "podman-default.json").read_text())


def test_podman_default_profile_compiles_and_loads(tmp_path):
    def body(_):
        return {"mkdir": errno_of(os.mkdir, tmp_path / "d"),
                "netlink_audit": errno_of(socket.socket, socket.AF_NETLINK, socket.SOCK_RAW, 9),
                "sethostname": errno_of(socket.sethostname, "x"),
                "add_key": raw_syscall(add_key, 0, 0, 0, 0, 0)}

    add_key = seccomp.syscall_number("add_key")
    report, status = in_child(podman_default(), body)
    assert report is not None and report.get("exception") is None, (report, status)
    assert report["mkdir"] == 0
    assert report["netlink_audit"] == errno.EINVAL  # the profile's own errnoRet 22
    assert report["sethostname"] == errno.EPERM
    assert report["add_key"] == errno.ENOSYS  # not listed: defaultErrnoRet 38


def test_cache_reuses_the_program_and_survives_a_bad_entry(tmp_path):
    profile = podman_default()
    built = seccomp.compile(profile)
    first = seccomp.compile(profile, cache_dir=str(tmp_path))
    entries = list(tmp_path.iterdir())
    assert len(entries) == 1 and entries[0].read_bytes() == built.program == first.program
    # a hit is served from the file: prove it by planting a different valid program
    other = seccomp.compile(allow_with()).program
    entries[0].write_bytes(other)
    assert seccomp.compile(profile, cache_dir=str(tmp_path)).program == other
    # a truncated entry is rebuilt, not loaded
    entries[0].write_bytes(built.program[:-3])
    assert seccomp.compile(profile, cache_dir=str(tmp_path)).program == built.program
    # a different profile gets its own entry
    profile["defaultErrnoRet"] = errno.EPERM
    seccomp.compile(profile, cache_dir=str(tmp_path))
    assert len(list(tmp_path.iterdir())) == 2


def test_cached_program_loads(tmp_path):
    seccomp.compile(podman_default(), cache_dir=str(tmp_path))
    report, _ = in_child(podman_default(),
                         lambda _: {"sethostname": errno_of(socket.sethostname, "x")},
                         cache_dir=str(tmp_path))
    assert report["sethostname"] == errno.EPERM


def test_features_lists_what_compile_accepts():
    f = seccomp.features()
    assert set(f["actions"]) == set(seccomp.ACTIONS)
    assert "SCMP_ARCH_X86_64" in f["archs"] or os.uname().machine != "x86_64"
    for flag in f["supportedFlags"]:
        seccomp.compile(allow_with(flags=[flag]))


def test_architecture_this_libseccomp_lacks_is_named():
    lacking = [name for name in seccomp.ARCHITECTURES if name not in seccomp.features()["archs"]]
    if not lacking:
        pytest.skip(f"libseccomp {seccomp.libseccomp_version()} knows every OCI architecture")
    with pytest.raises(seccomp.SeccompError) as e:
        seccomp.compile(allow_with(architectures=[lacking[0]]))
    assert str(e.value) == (f"linux.seccomp.architectures[0]: architecture {lacking[0]} is not "
                            f"supported by libseccomp {seccomp.libseccomp_version()}")


# --- runc as the oracle ------------------------------------------------------------------
# The same probe runs under runc with Podman's profile and under our filter (loaded in a
# fork that then execs the probe, as the init does); both must see the same answers.

PROBE = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
nr = {name: int(n) for name, n in (kv.split("=") for kv in os.environ["NRS"].split(","))}

def sc(name, *args, x32=False):
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr[name] | (0x40000000 if x32 else 0)),
                       *[ctypes.c_long(a) for a in args])
    return ctypes.get_errno() if ret == -1 else "ok"

print(json.dumps({
    "personality(query)": sc("personality", 0xFFFFFFFF),
    "personality(8)": sc("personality", 8),
    "personality(4)": sc("personality", 4),
    "socket(netlink, audit)": sc("socket", 16, 3, 9),
    "socket(netlink, route)": sc("socket", 16, 3, 0),
    "add_key": sc("add_key", 0, 0, 0, 0, 0),
    "bpf": sc("bpf", 0xFFFF, 0, 0),
    "kexec_load": sc("kexec_load", 0, 0, 0, 0),
    "clock_settime": sc("clock_settime", 0, 0),
    "ptrace": sc("ptrace", 0xFFFF, 0, 0, 0),
    "io_uring_setup": sc("io_uring_setup", 0, 0),
    "syscall 1023": sc("nr1023"),
    "x32 getpid": sc("getpid", x32=True),
}, sort_keys=True))
"""
PROBE_SYSCALLS = ["personality", "socket", "add_key", "bpf", "kexec_load", "clock_settime",
                  "ptrace", "io_uring_setup", "getpid"]


def podman_default_eperm():
    """Podman's profile as older ones were: unlisted syscalls get EPERM."""
    profile = podman_default()
    del profile["defaultErrnoRet"]
    return profile


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the probe uses x86_64 numbers")
@pytest.mark.parametrize("make_profile", [podman_default, podman_default_eperm])
def test_podman_profile_answers_as_under_runc(tmp_path, make_profile):
    import shutil
    import subprocess
    import sys

    runc = shutil.which("runc")
    if runc is None:
        pytest.skip("runc is not installed")
    python = shutil.which("python3", path="/usr/bin")
    if python is None:
        pytest.skip("/usr/bin/python3 is needed inside the oracle's container")
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    nrs = ",".join(f"{n}={seccomp.syscall_number(n)}" for n in PROBE_SYSCALLS) + ",nr1023=1023"
    env = [f"NRS={nrs}", "PATH=/usr/bin:/bin"]
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    binds = [d for d in ("/usr", "/lib", "/lib64", "/bin", "/etc") if os.path.exists(d)]
    config = {
        "ociVersion": "1.0.2",
        "process": {"user": {"uid": 0, "gid": 0}, "args": [python, str(probe)], "cwd": "/",
                    "env": env, "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": True},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]
        + [{"destination": d, "type": "bind", "source": d, "options": ["rbind", "ro"]}
           for d in binds + [str(tmp_path)]],
        "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}],
                  "seccomp": make_profile()},
    }
    (bundle / "config.json").write_text(json.dumps(config))
    cid = f"pyrun-seccomp-oracle-{os.getpid()}"
    done = subprocess.run([runc, "--root", str(tmp_path / "runc-state"), "run", "-b", str(bundle),
                           cid], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"runc could not run the oracle container here: {done.stderr.strip()}")
    expected = json.loads(done.stdout)

    flt = seccomp.compile(make_profile())
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(w, 1)
            flt.load()
            os.execve(python, [python, str(probe)], dict(e.split("=", 1) for e in env))
        finally:
            os._exit(127)
    os.close(w)
    with os.fdopen(r) as out:
        got = json.loads(out.read())
    os.waitpid(pid, 0)
    assert got == expected, f"runc: {expected}"
    # the probe must tell filters apart: not everything may be allowed or refused
    assert {"ok", errno.ENOSYS, errno.EPERM, errno.EINVAL} <= set(expected.values())
    assert expected["syscall 1023"] == errno.ENOSYS  # newer than the profile


def test_seccomp_errors_follow_the_project_convention():
    from runtime.errors import PyrunError
    assert issubclass(seccomp.SeccompError, PyrunError)  # the CLI prints it as one line


@pytest.mark.parametrize("name", ["mk dir", "MKDIR", "open;rm", "../x"])
def test_malformed_syscall_name_is_refused(name):
    with pytest.raises(seccomp.SeccompError, match="is not a syscall name"):
        seccomp.compile({"defaultAction": "SCMP_ACT_ALLOW",
                         "syscalls": [{"names": [name], "action": "SCMP_ACT_ERRNO"}]})


@pytest.mark.parametrize("where,profile", [
    ("syscalls[0].errnoRet", {"defaultAction": "SCMP_ACT_ALLOW",
                              "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL", "errnoRet": 13}]}),
    ("defaultErrnoRet", {"defaultAction": "SCMP_ACT_KILL", "defaultErrnoRet": 13}),
])
def test_errno_ret_on_an_action_without_one_is_refused(where, profile):
    """config-linux.md: when the action does not support an errno, the runtime MUST fail."""
    with pytest.raises(seccomp.SeccompError) as e:
        seccomp.compile(profile)
    assert where in str(e.value) and "returns no errno" in str(e.value), str(e.value)
