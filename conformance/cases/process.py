"""config.md#Process and its Linux fields: args, env, cwd, terminal and consoleSize (with runc's
--console-socket), user (uid, gid, additionalGids, umask), rlimits, capabilities,
noNewPrivileges, oomScoreAdj, scheduler, ioPriority, LSM labels; runtime-linux.md's file
descriptors. Each decided by what the process sees of itself (/proc/self/status, limits, id…)."""
import os

from conformance import bundle as bundles
from conformance.harness import LEAK_VAR
from conformance.suite import case

# capabilities(7), by number
CAPS = ("CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
        "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
        "SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME "
        "SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG "
        "WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE").split()


def cap_names(mask_hex: str) -> set[str]:
    mask = int(mask_hex, 16)
    return {f"CAP_{name}" for i, name in enumerate(CAPS) if mask >> i & 1}


def status(text: str) -> dict[str, str]:
    """/proc/self/status as the container printed it."""
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def self_status(ctx, cfg=None) -> dict[str, str]:
    return status(ctx.sh("cat /proc/self/status", cfg))


def with_process(ctx, **fields) -> dict:
    cfg = ctx.config()
    cfg["process"].update(fields)
    return cfg


# --- args, env, cwd -----------------------------------------------------------------------------

@case("process.args", "config.md#Process")
def args_verbatim(ctx):
    """args reach the program verbatim: spaces, an empty string, args[0]."""
    cfg = ctx.config()
    cfg["process"]["args"] = ["sh", "-c", 'printf "[%s]" "$0" "$@"', "argv0", "a b", "", "c"]
    p = ctx.run_container(cfg)
    ctx.check(p.out == "[argv0][a b][][c]", f"the program got {p.out!r} ({p.why()})")


@case("process.args-path-lookup", "config.md#Process")
def args_path(ctx):
    """A relative args[0] is looked up in the process's PATH (execvp), not the runtime's."""
    cfg = with_process(ctx, args=["cf-tool", "x"], env=["PATH=/cf-bin:/bin"])
    p = ctx.run_container(cfg, files={"cf-bin/cf-tool": '#!/bin/sh\necho "cf-tool $*"\n'})
    ctx.check(p.out.strip() == "cf-tool x", f"the container printed {p.out!r} ({p.why()})")


@case("process.args-missing-executable-errors", "config.md#Process")
def args_missing(ctx):
    cfg = with_process(ctx, args=["/cf-no-such-program"])
    p = ctx.run_container(cfg)
    ctx.expect_error(p, "run of a missing executable")


@case("process.args-empty-errors", "config.md#Process")
def args_empty(ctx):
    """args needs at least one entry: an empty one is an error (at create or start)."""
    cfg = with_process(ctx, args=[])
    c, p = ctx.create(cfg, check=False)
    if p.ok:
        ctx.expect_error(c.start(check=False), "start with empty args")


@case("process.env", "config.md#Process")
def env_set(ctx):
    cfg = with_process(ctx, args=["env"], env=[bundles.PATH_ENV, "CF_ONE=1", "CF_EQ=a=b", "CF_EMPTY="])
    p = ctx.run_container(cfg)
    got = p.out.splitlines()
    missing = [v for v in ("CF_ONE=1", "CF_EQ=a=b", "CF_EMPTY=") if v not in got]
    ctx.check(not missing, f"missing from the environment: {missing} (got {got}; {p.why()})")


@case("process.env-nothing-of-the-runtime", "config.md#Process")
def env_no_leak(ctx):
    """The process's environment comes from env, not from the runtime's own."""
    p = ctx.run_container(with_process(ctx, args=["env"]))
    ctx.check(p.ok, p.why())
    ctx.check(LEAK_VAR not in p.out, f"the runtime's {LEAK_VAR} reached the process")


@case("process.cwd", "config.md#Process")
def cwd(ctx):
    cfg = with_process(ctx, cwd="/cf-dir/sub", args=["sh", "-c", "pwd; cat ./f"])
    p = ctx.run_container(cfg, files={"cf-dir/sub/f": "relative-read\n"})
    ctx.check(p.out.split() == ["/cf-dir/sub", "relative-read"], f"the container printed {p.out!r} ({p.why()})")


@case("process.cwd-relative-errors", "config.md#Process")
def cwd_relative(ctx):
    """cwd MUST be absolute: a relative one is an invalid value, an error."""
    cfg = with_process(ctx, cwd="tmp", args=["sh", "-c", "echo RAN"])
    c, p = ctx.create(cfg, check=False)
    if p.ok:
        c.start(check=False)
        c.wait_stopped()
    ctx.check(not p.ok and "RAN" not in c.output(), "a relative cwd was accepted")


# --- terminal -----------------------------------------------------------------------------------

# create sends the master before it returns; a little slack for the accepting thread
MASTER_WAIT = 5.0
TTY_PROBE = ("tty; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-three-tty; stty size; "
             "stat -c 'console=%t' /dev/console; echo END")


def on_terminal(ctx, cfg: dict, script: str = TTY_PROBE) -> str:
    cfg["process"]["terminal"] = True
    cfg["process"]["args"] = ["sh", "-c", script]
    cs = ctx.console_socket()
    c, _ = ctx.create(cfg, args=("--console-socket", cs.path))
    cs.wait_master(MASTER_WAIT)
    c.start()
    return cs.read_until(b"END", min(10, ctx.left())).decode(errors="replace")


@case("process.terminal", "config.md#Process")
def terminal(ctx):
    """terminal: a pseudoterminal on the process's standard streams."""
    out = on_terminal(ctx, ctx.config())
    ctx.check("/dev/pts/" in out and "all-three-tty" in out, f"the terminal showed {out!r}")


@case("process.terminal-false", "config.md#Process")
def terminal_false(ctx):
    out = ctx.sh("[ -t 0 ] || [ -t 1 ] || [ -t 2 ] || echo no-tty")
    ctx.check(out.strip() == "no-tty", f"the container printed {out!r}")


@case("process.consoleSize", "config.md#Process")
def console_size(ctx):
    cfg = ctx.config()
    cfg["process"]["consoleSize"] = {"height": 33, "width": 111}
    out = on_terminal(ctx, cfg)
    ctx.check("33 111" in out, f"stty size on the terminal: {out!r}")


@case("process.consoleSize-ignored-without-terminal", "config.md#Process")
def console_size_ignored(ctx):
    cfg = ctx.config()
    cfg["process"]["consoleSize"] = {"height": 33, "width": 111}
    out = ctx.sh("echo ran", cfg)
    ctx.check(out.strip() == "ran", f"the container printed {out!r}")


@case("devices.console-with-terminal", "config-linux.md#Default Devices")
def console_device(ctx):
    """/dev/console is the terminal's pty (a devpts device, major 136)."""
    out = on_terminal(ctx, ctx.config())
    ctx.check("console=88" in out, f"/dev/console on the terminal: {out!r}")


@case("console-socket.master", "runc CLI: create --console-socket")
def console_socket(ctx):
    """The fd sent over --console-socket is the master of the process's terminal."""
    cfg = ctx.config()
    cfg["process"]["terminal"] = True
    cfg["process"]["args"] = ["sh", "-c", "read line; echo got-$line; echo END"]
    cs = ctx.console_socket()
    c, _ = ctx.create(cfg, args=("--console-socket", cs.path))
    master = cs.wait_master(MASTER_WAIT)
    ctx.check(os.isatty(master), "the fd received is not a terminal")
    c.start()
    os.write(master, b"typed\n")
    out = cs.read_until(b"END", min(10, ctx.left())).decode(errors="replace")
    ctx.check("got-typed" in out, f"what was typed did not reach the process: {out!r}")


# --- user ---------------------------------------------------------------------------------------

def as_user(ctx, **user) -> dict:
    cfg = ctx.config()
    cfg["process"]["user"] = user
    return cfg


@case("user.uid", "config.md#POSIX-platform User")
def user_uid(ctx):
    st = self_status(ctx, as_user(ctx, uid=1000, gid=1001))
    ctx.check(st.get("Uid", "").split() == ["1000"] * 4, f"Uid: {st.get('Uid')}")


@case("user.gid", "config.md#POSIX-platform User")
def user_gid(ctx):
    st = self_status(ctx, as_user(ctx, uid=1000, gid=1001))
    ctx.check(st.get("Gid", "").split() == ["1001"] * 4, f"Gid: {st.get('Gid')}")


@case("user.additionalGids", "config.md#POSIX-platform User")
def user_groups(ctx):
    st = self_status(ctx, as_user(ctx, uid=1000, gid=1001, additionalGids=[5, 2000, 3000]))
    got = set(st.get("Groups", "").split())
    ctx.check({"5", "2000", "3000"} <= got <= {"5", "2000", "3000", "1001"}, f"Groups: {sorted(got)}")


@case("user.no-additionalGids", "config.md#POSIX-platform User")
def user_no_groups(ctx):
    """Without additionalGids the process holds no supplementary group of the runtime's."""
    st = self_status(ctx, as_user(ctx, uid=1000, gid=1001))
    got = set(st.get("Groups", "").split())
    ctx.check(got <= {"1001"}, f"Groups: {sorted(got)}")


@case("user.umask", "config.md#POSIX-platform User")
def user_umask(ctx):
    cfg = as_user(ctx, uid=0, gid=0, umask=0o077)
    out = ctx.sh("umask; touch /tmp/f; stat -c %a /tmp/f", cfg)
    ctx.check(out.split() == ["0077", "600"], f"umask and a new file's mode: {out.split()}")


# --- rlimits ------------------------------------------------------------------------------------

LIMIT_NAMES = {"RLIMIT_NOFILE": "Max open files", "RLIMIT_CORE": "Max core file size",
               "RLIMIT_NPROC": "Max processes", "RLIMIT_MSGQUEUE": "Max msgqueue size",
               "RLIMIT_STACK": "Max stack size"}


def limits(text: str) -> dict[str, list[str]]:
    out = {}
    for line in text.splitlines()[1:]:
        for name in LIMIT_NAMES.values():
            if line.startswith(name):
                out[name] = line[len(name):].split()[:2]
    return out


for _type, _soft, _hard in (("RLIMIT_NOFILE", 100, 200), ("RLIMIT_CORE", 1024, 4096),
                            ("RLIMIT_NPROC", 300, 400), ("RLIMIT_MSGQUEUE", 8192, 16384)):
    def _rlimit(ctx, kind=_type, soft=_soft, hard=_hard):
        cfg = ctx.config()
        cfg["process"]["rlimits"] = [{"type": kind, "soft": soft, "hard": hard}]
        got = limits(ctx.sh("cat /proc/self/limits", cfg)).get(LIMIT_NAMES[kind])
        ctx.check(got == [str(soft), str(hard)], f"{kind}: soft/hard {got}, configured {soft}/{hard}")
    case(f"rlimits.{_type}", "config.md#POSIX process")(_rlimit)


@case("rlimits.unknown-type-errors", "config.md#POSIX process")
def rlimit_unknown(ctx):
    cfg = ctx.config()
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_CF_BOGUS", "soft": 1, "hard": 1}]
    _, p = ctx.create(cfg, check=False)
    ctx.expect_error(p, "create with rlimit type RLIMIT_CF_BOGUS")


@case("rlimits.duplicate-type-errors", "config.md#POSIX process")
def rlimit_duplicate(ctx):
    cfg = ctx.config()
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 100},
                                 {"type": "RLIMIT_NOFILE", "soft": 200, "hard": 200}]
    _, p = ctx.create(cfg, check=False)
    ctx.expect_error(p, "create with two RLIMIT_NOFILE entries")


# --- capabilities -------------------------------------------------------------------------------

def caps_cfg(ctx, user=(0, 0), **sets) -> dict:
    cfg = as_user(ctx, uid=user[0], gid=user[1])
    cfg["process"]["capabilities"] = {k: [f"CAP_{c}" for c in v] for k, v in sets.items()}
    return cfg


@case("capabilities.bounding", "config.md#Linux Process")
def caps_bounding(ctx):
    want = ["CHOWN", "KILL", "NET_RAW"]
    st = self_status(ctx, caps_cfg(ctx, bounding=want, effective=want, permitted=want))
    got = cap_names(st["CapBnd"])
    ctx.check(got == {f"CAP_{c}" for c in want}, f"CapBnd {sorted(got)}")


@case("capabilities.effective-permitted", "config.md#Linux Process")
def caps_effective(ctx):
    """A root process's effective and permitted sets after execve are its bounding and
    inheritable sets (capabilities(7)): nothing the runtime had besides."""
    st = self_status(ctx, caps_cfg(ctx, bounding=["CHOWN", "KILL"], effective=["CHOWN", "KILL"],
                                   permitted=["CHOWN", "KILL"], inheritable=["KILL"]))
    want = {"CAP_CHOWN", "CAP_KILL"}
    ctx.check(cap_names(st["CapEff"]) == want and cap_names(st["CapPrm"]) == want,
              f"CapEff {sorted(cap_names(st['CapEff']))}, CapPrm {sorted(cap_names(st['CapPrm']))}")


@case("capabilities.inheritable", "config.md#Linux Process")
def caps_inheritable(ctx):
    st = self_status(ctx, caps_cfg(ctx, bounding=["CHOWN", "KILL", "NET_RAW"], effective=["CHOWN"],
                                   permitted=["CHOWN", "KILL", "NET_RAW"], inheritable=["KILL", "NET_RAW"]))
    got = cap_names(st["CapInh"])
    ctx.check(got == {"CAP_KILL", "CAP_NET_RAW"}, f"CapInh {sorted(got)}")


AMBIENT = dict(bounding=["CHOWN", "KILL", "NET_RAW", "SETUID", "NET_BIND_SERVICE"], effective=["CHOWN", "KILL"],
               permitted=["CHOWN", "KILL", "NET_RAW", "NET_BIND_SERVICE"],
               inheritable=["CHOWN", "KILL", "NET_BIND_SERVICE"], ambient=["CHOWN", "NET_BIND_SERVICE"])


@case("capabilities.ambient", "config.md#Linux Process")
def caps_ambient(ctx):
    """A non-root process keeps its ambient set across execve."""
    st = self_status(ctx, caps_cfg(ctx, user=(1000, 1000), **AMBIENT))
    got = cap_names(st["CapAmb"])
    ctx.check(got == {"CAP_CHOWN", "CAP_NET_BIND_SERVICE"}, f"CapAmb {sorted(got)}")


@case("capabilities.ambient-effective", "config.md#Linux Process")
def caps_ambient_effective(ctx):
    """...and can use it: a uid 1000 process with ambient CAP_CHOWN chowns a file."""
    cfg = caps_cfg(ctx, user=(1000, 1000), **AMBIENT)
    out = ctx.sh("grep CapEff /proc/self/status; touch /tmp/f; chown 0:0 /tmp/f && echo chowned", cfg)
    eff = cap_names(status(out).get("CapEff", "0"))
    ctx.check(eff == {"CAP_CHOWN", "CAP_NET_BIND_SERVICE"} and "chowned" in out,
              f"CapEff {sorted(eff)}; {out.splitlines()[-1:]}")


@case("capabilities.withheld", "config.md#Linux Process")
def caps_withheld(ctx):
    """A capability in no set is not there: root without CAP_CHOWN cannot chown."""
    cfg = caps_cfg(ctx, bounding=["KILL"], effective=["KILL"], permitted=["KILL"])
    out = ctx.sh("touch /tmp/f; chown 1:1 /tmp/f 2>/dev/null && echo CHOWNED; stat -c %u /tmp/f", cfg)
    ctx.check(out.split() == ["0"], f"root without CAP_CHOWN: {out.split()}")


# --- noNewPrivileges, oomScoreAdj ---------------------------------------------------------------

@case("process.noNewPrivileges-true", "config.md#Linux Process")
def nnp_true(ctx):
    st = self_status(ctx, with_process(ctx, noNewPrivileges=True))
    ctx.check(st.get("NoNewPrivs") == "1", f"NoNewPrivs: {st.get('NoNewPrivs')}")


@case("process.noNewPrivileges-false", "config.md#Linux Process")
def nnp_false(ctx):
    st = self_status(ctx, with_process(ctx, noNewPrivileges=False))
    ctx.check(st.get("NoNewPrivs") == "0", f"NoNewPrivs: {st.get('NoNewPrivs')}")


@case("process.oomScoreAdj", "config.md#Linux Process")
def oom_set(ctx):
    out = ctx.sh("cat /proc/self/oom_score_adj", with_process(ctx, oomScoreAdj=432))
    ctx.check(out.strip() == "432", f"oom_score_adj {out.strip()!r}")


@case("process.oomScoreAdj-unset-unchanged", "config.md#Linux Process")
def oom_unset(ctx):
    """Without oomScoreAdj the runtime MUST NOT change oom_score_adj (the caller's 123 stays)."""
    cfg = with_process(ctx, args=["cat", "/proc/self/oom_score_adj"])
    b = ctx.bundle(cfg)
    wrapper = ["sh", "-c", 'echo 123 > /proc/self/oom_score_adj && exec "$@"', "sh"]
    p = ctx.run.call(["run", "--bundle", b, ctx.new_id()], timeout=ctx.left(), prefix=wrapper)
    ctx.check(p.out.strip() == "123", f"oom_score_adj {p.out.strip()!r} ({p.why()})")


# --- scheduling (runtime-spec 1.2) --------------------------------------------------------------

@case("process.scheduler", "config.md#Linux Process")
def scheduler(ctx):
    cfg = with_process(ctx, scheduler={"policy": "SCHED_BATCH", "nice": 7})
    out = ctx.sh("grep '^policy' /proc/self/sched; cut -d' ' -f19 /proc/self/stat", cfg)
    words = out.split()
    ctx.check(len(words) >= 4 and words[2] == "3" and words[3] == "7",
              f"policy and nice: {words} (SCHED_BATCH is 3)")


@case("process.ioPriority", "config.md#Linux Process")
def io_priority(ctx):
    cfg = with_process(ctx, ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 6})
    out = ctx.sh("ionice -p $$", cfg)
    ctx.check(out.strip() == "best-effort: prio 6", f"ionice: {out.strip()!r}")


# --- LSM ----------------------------------------------------------------------------------------

@case("process.apparmorProfile", "config.md#Linux Process")
def apparmor(ctx):
    if not os.path.isdir("/sys/kernel/security/apparmor"):
        ctx.skip("the host has no AppArmor")
    out = ctx.sh("cat /proc/self/attr/current", with_process(ctx, apparmorProfile="unconfined"))
    ctx.check(out.strip().startswith("unconfined"), f"the process's profile: {out!r}")


@case("process.selinuxLabel", "config.md#Linux Process")
def selinux(ctx):
    if not os.path.isdir("/sys/fs/selinux"):
        ctx.skip("the host has no SELinux")
    with open("/proc/self/attr/current") as f:
        label = f.read().strip("\0\n")
    out = ctx.sh("cat /proc/self/attr/current", with_process(ctx, selinuxLabel=label))
    ctx.check(out.strip("\0\n") == label, f"the process's label: {out!r}")


# --- file descriptors ---------------------------------------------------------------------------

@case("file-descriptors.stdio-only", "runtime-linux.md#File descriptors")
def fds(ctx):
    """Only stdin, stdout and stderr reach the process: not an fd the runtime's caller left open."""
    cfg = with_process(ctx, args=["ls", "/proc/self/fd"])
    b = ctx.bundle(cfg)
    fd = os.open(ctx.path("inherited"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        p = ctx.run.call(["run", "--bundle", b, ctx.new_id()], timeout=ctx.left(), pass_fds=(fd,))
    finally:
        os.close(fd)
    got = sorted(p.out.split())
    ctx.check(p.ok and set(got) <= {"0", "1", "2", "3"},
              f"the process has fds {got} (the caller's was {fd}; 3 is ls's own; {p.why()})")
