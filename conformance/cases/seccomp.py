"""config-linux.md#Seccomp: actions (errno, its errnoRet, kill, kill_process, trap, log, allow),
the default action and its errno, argument conditions, the architectures list, and seccomp for a
process without no_new_privs. Each decided by what a syscall does inside the container."""
from conformance.suite import case

# busybox's mkdir is mkdir(2) or mkdirat(2) by libc; chmod is chmod(2) or fchmodat(2)
MKDIR = ["mkdir", "mkdirat"]
# What busybox and a runtime's last steps before execve need, for a default-deny profile.
ALLOWED = (
    "access arch_prctl brk capget capset chdir chmod chown clock_gettime clock_nanosleep clone "
    "clone3 close close_range dup dup2 dup3 epoll_create1 epoll_ctl epoll_pwait epoll_wait "
    "execve execveat exit exit_group faccessat faccessat2 fadvise64 fchdir fchmod fchmodat "
    "fchown fchownat fcntl fdatasync flock fork fstat fstatfs fsync ftruncate futex getcwd "
    "getdents getdents64 getegid geteuid getgid getgroups getpgid getpgrp getpid getppid "
    "getpriority getrandom getresgid getresuid getrlimit get_robust_list getrusage getsid "
    "gettid gettimeofday getuid getxattr ioctl kill lchown lgetxattr link linkat listxattr "
    "lseek lstat madvise membarrier memfd_create mmap mprotect mremap munmap nanosleep "
    "newfstatat open openat openat2 pause pipe pipe2 poll ppoll prctl pread64 preadv prlimit64 "
    "pselect6 pwrite64 read readlink readlinkat readv rename renameat renameat2 restart_syscall "
    "rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn "
    "rt_sigsuspend rt_sigtimedwait sched_getaffinity sched_yield seccomp select setgid setgroups "
    "setitimer setpgid setpriority setregid setresgid setresuid setreuid setrlimit set_robust_list "
    "setsid set_tid_address setuid sigaltstack stat statfs statx symlink symlinkat sysinfo tgkill "
    "time times tkill umask uname unlink unlinkat utimensat vfork wait4 waitid write writev"
).split()


def profile(ctx, seccomp: dict, script: str, **process) -> str:
    cfg = ctx.config()
    cfg["linux"]["seccomp"] = seccomp
    cfg["process"].update(process)
    return ctx.sh(script, cfg, check=False)


def rule(names, action, **extra) -> dict:
    return {"names": list(names), "action": action, **extra}


def allow_all_but(*rules) -> dict:
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(rules)}


MKDIR_PROBE = "mkdir /tmp/cf-dir 2>&1 || true; [ -d /tmp/cf-dir ] && echo MADE; echo END"


@case("seccomp.errno", "config-linux.md#Seccomp")
def errno_default(ctx):
    """SCMP_ACT_ERRNO without errnoRet fails the call with EPERM."""
    out = profile(ctx, allow_all_but(rule(MKDIR, "SCMP_ACT_ERRNO")), MKDIR_PROBE)
    ctx.check("Operation not permitted" in out and "MADE" not in out, f"mkdir under the filter: {out!r}")


@case("seccomp.errnoRet", "config-linux.md#Seccomp")
def errno_ret(ctx):
    out = profile(ctx, allow_all_but(rule(MKDIR, "SCMP_ACT_ERRNO", errnoRet=13)), MKDIR_PROBE)
    ctx.check("Permission denied" in out and "MADE" not in out, f"mkdir with errnoRet 13 (EACCES): {out!r}")


@case("seccomp.errnoRet-unsupported-action-errors", "config-linux.md#Seccomp")
def errno_ret_bad(ctx):
    """errnoRet on an action that takes none: the runtime MUST error."""
    cfg = ctx.config()
    cfg["linux"]["seccomp"] = allow_all_but(rule(MKDIR, "SCMP_ACT_KILL", errnoRet=13))
    _, p = ctx.create(cfg, check=False)
    ctx.expect_error(p, "create with errnoRet on SCMP_ACT_KILL")


def _killed(ctx, action: str):
    """The call kills its caller (a subshell): its status is 128+SIGSYS, the shell goes on."""
    out = profile(ctx, allow_all_but(rule(["sync"], action)), "(sync); echo status=$?")
    ctx.check("status=159" in out, f"sync(2) under {action}: {out!r} (SIGSYS is 31)")


@case("seccomp.kill", "config-linux.md#Seccomp")
def act_kill(ctx):
    _killed(ctx, "SCMP_ACT_KILL")


@case("seccomp.kill-process", "config-linux.md#Seccomp")
def act_kill_process(ctx):
    _killed(ctx, "SCMP_ACT_KILL_PROCESS")


@case("seccomp.trap", "config-linux.md#Seccomp")
def act_trap(ctx):
    """SCMP_ACT_TRAP sends SIGSYS (whose default disposition kills)."""
    _killed(ctx, "SCMP_ACT_TRAP")


@case("seccomp.log", "config-linux.md#Seccomp")
def act_log(ctx):
    out = profile(ctx, allow_all_but(rule(MKDIR, "SCMP_ACT_LOG")), MKDIR_PROBE)
    ctx.check("MADE" in out, f"mkdir under SCMP_ACT_LOG: {out!r}")


@case("seccomp.defaultAction", "config-linux.md#Seccomp")
def default_action(ctx):
    """A default-deny profile: the listed syscalls (SCMP_ACT_ALLOW) work, the others fail EPERM."""
    allowed = [s for s in ALLOWED if s not in MKDIR]
    out = profile(ctx, {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule(allowed, "SCMP_ACT_ALLOW")]},
                  "echo allowed-works; " + MKDIR_PROBE)
    ctx.check("allowed-works" in out and "Operation not permitted" in out and "MADE" not in out,
              f"under a default-deny profile: {out!r}")


@case("seccomp.defaultErrnoRet", "config-linux.md#Seccomp")
def default_errno(ctx):
    allowed = [s for s in ALLOWED if s not in MKDIR]
    out = profile(ctx, {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 13,
                        "syscalls": [rule(allowed, "SCMP_ACT_ALLOW")]},
                  "echo allowed-works; " + MKDIR_PROBE)
    ctx.check("allowed-works" in out and "Permission denied" in out and "MADE" not in out,
              f"under a default-deny profile with defaultErrnoRet 13: {out!r}")


def _chmod_rules(op: str, value: int, value_two: int | None = None) -> list[dict]:
    """chmod's mode is argument 1 of chmod(2), argument 2 of fchmodat(2)."""
    def arg(index):
        a = {"index": index, "value": value, "op": op}
        if value_two is not None:
            a["valueTwo"] = value_two
        return a
    return [rule(["chmod"], "SCMP_ACT_ERRNO", args=[arg(1)]),
            rule(["fchmodat"], "SCMP_ACT_ERRNO", args=[arg(2)])]


CHMOD_PROBE = ("touch /tmp/f; for m in 777 755 702 600; do chmod $m /tmp/f 2>/dev/null; "
               "echo $m=$(stat -c %a /tmp/f); chmod 644 /tmp/f; done")


def _modes(out: str) -> dict[str, bool]:
    """mode → whether chmod to it went through."""
    got = {}
    for word in out.split():
        m, _, result = word.partition("=")
        got[m] = result == m
    return got


# case, the comparison on chmod's mode, value, valueTwo, the modes of CHMOD_PROBE it refuses.
ARG_CASES = (
    ("args-eq", "SCMP_CMP_EQ", 0o777, None, {"777"}),
    # (arg & value) == valueTwo: here, any world-writable mode
    ("args-masked-eq", "SCMP_CMP_MASKED_EQ", 0o002, 0o002, {"777", "702"}),
    ("args-gt", "SCMP_CMP_GT", 0o700, None, {"777", "755", "702"}),
)
for _name, _op, _value, _two, _refused in ARG_CASES:
    def _args_case(ctx, op=_op, value=_value, two=_two, refused=_refused):
        got = _modes(profile(ctx, allow_all_but(*_chmod_rules(op, value, two)), CHMOD_PROBE))
        want = {m: m not in refused for m in ("777", "755", "702", "600")}
        ctx.check(got == want, f"chmod went through: {got}")
    case(f"seccomp.{_name}", "config-linux.md#Seccomp")(_args_case)


@case("seccomp.architectures", "config-linux.md#Seccomp")
def architectures(ctx):
    seccomp = allow_all_but(rule(MKDIR, "SCMP_ACT_ERRNO"))
    seccomp["architectures"] = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    out = profile(ctx, seccomp, MKDIR_PROBE)
    ctx.check("Operation not permitted" in out and "MADE" not in out, f"mkdir under the filter: {out!r}")


@case("seccomp.without-noNewPrivileges", "config-linux.md#Seccomp")
def without_nnp(ctx):
    """A non-root process without no_new_privs still gets the filter (the runtime loads it
    while it may)."""
    out = profile(ctx, allow_all_but(rule(MKDIR, "SCMP_ACT_ERRNO")), MKDIR_PROBE,
                  noNewPrivileges=False, user={"uid": 1000, "gid": 1000})
    ctx.check("Operation not permitted" in out and "MADE" not in out, f"mkdir under the filter: {out!r}")


@case("seccomp.unknown-action-errors", "config.md#Valid values")
def unknown_action(ctx):
    cfg = ctx.config()
    cfg["linux"]["seccomp"] = allow_all_but(rule(MKDIR, "SCMP_ACT_CF_BOGUS"))
    _, p = ctx.create(cfg, check=False)
    ctx.expect_error(p, "create with seccomp action SCMP_ACT_CF_BOGUS")
