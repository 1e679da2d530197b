"""The container process: credentials, capabilities, limits, then execve.

Runs in the container init after pivot_root, in the order the kernel needs:
rlimits and oomScoreAdj while still privileged, the bounding set dropped while
CAP_SETPCAP is held, setgroups/setgid/setuid with keepcaps on, then the final
effective/permitted/inheritable/ambient sets, noNewPrivileges, and execve.
"""
import os

from .errors import ConfigError, PyrunError, describe_oserror

# Capability numbers from <linux/capability.h>; python-prctl's own table stops at 40.
CAPABILITIES = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}


def preload(proc: dict, linux: dict, hooks: dict | None = None) -> None:
    """Import, in the runtime before clone3, every module the child will need.

    After pivot_root the host's modules are out of reach; and after clone3 every
    page an import writes is copied first, which made the same imports ~5x dearer
    in the child (measured: runtime.init 0.9 ms there, 0.15 ms here)."""
    import _prctl  # noqa: F401
    from . import _shim  # noqa: F401
    if linux.get("seccomp"):
        from . import seccomp  # noqa: F401
    if proc.get("terminal"):
        from . import console
        console.preload()
    if hooks and (hooks.get("startContainer") or hooks.get("createContainer")):
        from . import hooks as hooks_mod
        hooks_mod.preload()


EXEC_HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_shim", "pyrun-exec")
EXEC_HELPER_MAGIC = "pyrun-exec\x01"


def sealed_exec_helper() -> int:
    """A sealed memfd holding pyrun-exec, the last hop into the container's program.

    While the runtime runs, /proc/self/exe is the host's Python interpreter; the
    container's program is exec'd through this memfd so that /proc/self/exe is
    never a host file at the moment the container's code takes over
    (CVE-2019-5736). Made by the runtime before clone3: the child inherits it,
    and never needs to reach the runtime's files (from a user namespace, say)."""
    import fcntl
    try:
        with open(EXEC_HELPER, "rb") as f:
            data = f.read()
    except OSError as e:
        raise PyrunError(describe_oserror(e, "read the exec helper (reinstall pyrun)")) from None
    fd = os.memfd_create("pyrun-exec", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    return fd


def execve(helper_fd: int, path: str, args: list[str], env: dict) -> None:
    os.execve(helper_fd, [EXEC_HELPER_MAGIC, path, *args], env)


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return max(CAPABILITIES.values())


def cap_numbers(names, what: str) -> list[int]:
    out = []
    for n in names or ():
        if n not in CAPABILITIES:
            raise ConfigError(f"unknown capability {n!r} in {what}")
        out.append(CAPABILITIES[n])
    return out


def check(process: dict) -> None:
    """Everything about `process` that can be refused before any namespace exists."""
    caps = process.get("capabilities") or {}
    for kind in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        cap_numbers(caps.get(kind), f"process.capabilities.{kind}")
    for r in process.get("rlimits") or ():
        if r.get("type") not in RLIMITS:
            raise ConfigError(f"unknown rlimit type {r.get('type')!r}")
        if r["soft"] > r["hard"]:
            raise ConfigError(f"rlimit {r['type']}: soft limit {r['soft']} is above the hard limit {r['hard']}")
    sched = process.get("scheduler")
    if sched:
        if sched.get("policy") not in SCHED_POLICIES:
            raise ConfigError(f"unknown scheduler policy {sched.get('policy')!r}")
        for f in sched.get("flags") or ():
            if f not in SCHED_FLAGS:
                raise ConfigError(f"unknown scheduler flag {f!r}")
    io = process.get("ioPriority")
    if io and io.get("class") not in IOPRIO_CLASSES:
        raise ConfigError(f"unknown ioPriority class {io.get('class')!r}")
    affinity = process.get("execCPUAffinity") or {}
    for key in ("initial", "final"):
        if affinity.get(key):
            try:
                parse_cpus(affinity[key])
            except ValueError:
                raise ConfigError(f"execCPUAffinity.{key}: invalid CPU list {affinity[key]!r}") from None
    check_lsm(process)
    cwd = process.get("cwd")
    if cwd is not None and not cwd.startswith("/"):
        raise ConfigError(f"process.cwd {cwd!r} must be an absolute path")
    if not process.get("args"):
        raise ConfigError("process.args must not be empty")


def apply_rlimits(rlimits) -> None:
    """Every rlimit, except that RLIMIT_NOFILE's soft limit waits at the hard one:
    the process still opens fds after this (the exec fifo, hooks' pipes), and a
    soft limit can always be lowered later, so lower_nofile() puts it in last.
    What can fail (raising a hard limit, an EPERM) fails here, before "ready"."""
    from . import _shim
    for r in rlimits or ():
        soft = r["hard"] if r["type"] == "RLIMIT_NOFILE" else r["soft"]
        try:
            _shim.setrlimit(RLIMITS[r["type"]], soft, r["hard"])
        except OSError as e:
            raise PyrunError(f"setrlimit {r['type']} soft={r['soft']} hard={r['hard']}: {e.strerror}") from None


def lower_nofile(rlimits) -> None:
    """RLIMIT_NOFILE's soft limit, once the process opens nothing more before execve."""
    from . import _shim
    for r in rlimits or ():
        if r["type"] == "RLIMIT_NOFILE" and r["soft"] != r["hard"]:
            _shim.setrlimit(RLIMITS["RLIMIT_NOFILE"], r["soft"], r["hard"])


SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
                  "SCHED_ISO": 4, "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}
SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02,
               "SCHED_FLAG_DL_OVERRUN": 0x04, "SCHED_FLAG_KEEP_POLICY": 0x08,
               "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
               "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}


def apply_scheduling(proc: dict) -> None:
    """scheduler, ioPriority and execCPUAffinity, before the process drops privileges."""
    from . import _shim
    sched = proc.get("scheduler")
    if sched:
        flags = 0
        for f in sched.get("flags") or ():
            flags |= SCHED_FLAGS[f]
        try:
            _shim.sched_setattr(SCHED_POLICIES[sched["policy"]], flags, sched.get("nice", 0),
                                sched.get("priority", 0), sched.get("runtime", 0),
                                sched.get("deadline", 0), sched.get("period", 0))
        except OSError as e:
            raise PyrunError(describe_oserror(e, f"set scheduler {sched['policy']}")) from None
    io = proc.get("ioPriority")
    if io:
        try:
            _shim.ioprio_set(IOPRIO_CLASSES[io["class"]], io.get("priority", 0))
        except OSError as e:
            raise PyrunError(describe_oserror(e, f"set I/O priority {io['class']}")) from None
    affinity = proc.get("execCPUAffinity") or {}
    cpus = affinity.get("final") or affinity.get("initial")
    if cpus:
        try:
            os.sched_setaffinity(0, parse_cpus(cpus))
        except (OSError, ValueError) as e:
            raise PyrunError(f"set CPU affinity {cpus!r}: {e}") from None


def parse_cpus(text: str) -> set[int]:
    """The kernel's cpu list format: "0-3,7"."""
    cpus = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


LSM_PRESENT = {"apparmor": "/sys/kernel/security/apparmor", "selinux": "/sys/fs/selinux/enforce"}


def lsm_enabled(name: str) -> bool:
    return os.path.exists(LSM_PRESENT[name])


def check_lsm(proc: dict) -> None:
    """apparmorProfile/selinuxLabel: refused where the host has no such LSM, as runc does."""
    if proc.get("apparmorProfile") and not lsm_enabled("apparmor"):
        raise ConfigError(f"apparmor profile {proc['apparmorProfile']!r} requested but AppArmor is not enabled on this host")
    if proc.get("selinuxLabel") and not lsm_enabled("selinux"):
        raise ConfigError(f"SELinux label {proc['selinuxLabel']!r} requested but SELinux is not enabled on this host")


def apply_lsm(proc: dict) -> None:
    """The label takes effect at the next execve (the helper's, then the program's)."""
    label = None
    if proc.get("apparmorProfile"):
        label, path = f"exec {proc['apparmorProfile']}", "/proc/self/attr/apparmor/exec"
        if not os.path.exists(path):
            path = "/proc/self/attr/exec"
    elif proc.get("selinuxLabel"):
        label, path = proc["selinuxLabel"], "/proc/self/attr/exec"
    if label:
        try:
            with open(path, "w") as f:
                f.write(label)
        except OSError as e:
            raise PyrunError(describe_oserror(e, f"set LSM label {label!r}")) from None


PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}  # PER_LINUX, PER_LINUX32


def apply_personality(personality: dict | None) -> None:
    """linux.personality: the execution domain (flags: the spec defines none)."""
    if not personality:
        return
    from . import _shim
    try:
        _shim.personality(PERSONALITY_DOMAINS[personality["domain"]])
    except OSError as e:
        raise PyrunError(describe_oserror(e, f"set personality {personality['domain']}")) from None


MEMORY_POLICY_MODES = {"MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3,
                       "MPOL_LOCAL": 4, "MPOL_PREFERRED_MANY": 5, "MPOL_WEIGHTED_INTERLEAVE": 6}
MEMORY_POLICY_FLAGS = {"MPOL_F_NUMA_BALANCING": 1 << 13, "MPOL_F_RELATIVE_NODES": 1 << 14,
                       "MPOL_F_STATIC_NODES": 1 << 15}


def check_memory_policy(policy: dict | None) -> None:
    """linux.memoryPolicy's shape, refused before anything is made."""
    if not policy:
        return
    mode = policy.get("mode")
    if mode not in MEMORY_POLICY_MODES:
        raise ConfigError(f"linux.memoryPolicy.mode {mode!r} is not a memory policy mode")
    for f in policy.get("flags") or ():
        if f not in MEMORY_POLICY_FLAGS:
            raise ConfigError(f"linux.memoryPolicy.flags: unknown flag {f!r}")
    nodes = policy.get("nodes") or ""
    if mode in ("MPOL_DEFAULT", "MPOL_LOCAL") and nodes:
        raise ConfigError(f"linux.memoryPolicy: {mode} takes no nodes")
    if mode not in ("MPOL_DEFAULT", "MPOL_LOCAL") and not nodes:
        raise ConfigError(f"linux.memoryPolicy: {mode} needs nodes")
    try:
        parse_cpus(nodes)
    except ValueError:
        raise ConfigError(f"linux.memoryPolicy.nodes: invalid node list {nodes!r}") from None


def apply_memory_policy(policy: dict | None) -> None:
    """set_mempolicy before execve: the program inherits it."""
    if not policy:
        return
    from . import _shim
    mode = MEMORY_POLICY_MODES[policy["mode"]]
    for f in policy.get("flags") or ():
        mode |= MEMORY_POLICY_FLAGS[f]
    try:
        _shim.set_mempolicy(mode, parse_cpus(policy.get("nodes") or ""))
    except OSError as e:
        raise PyrunError(describe_oserror(e, f"set memory policy {policy['mode']} on nodes {policy.get('nodes')!r}")) from None


def close_fds_except(preserve_fds: int, keep: tuple) -> None:
    """Close every fd but stdio, the preserved ones (3 … 3+preserve_fds-1) and `keep`:
    whatever else the caller or the runtime left open (a directory, the state dir's
    lock) could lead a path out of the container before execve closes it."""
    _close_from(3 + preserve_fds, keep)


def enter_cwd(cwd: str) -> None:
    """chdir into process.cwd, inside the container's root, verified.

    No magic links (a /proc/<pid>/cwd of a host process, an fd's /proc link): a
    path that leaves the root is refused, and so is a cwd the kernel reports as
    unreachable from it (runc's check for CVE-2024-21626)."""
    from . import _shim as k
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = k.openat2(root, cwd, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0,
                       k.RESOLVE_IN_ROOT | k.RESOLVE_NO_MAGICLINKS)
    except OSError as e:
        raise PyrunError(describe_oserror(e, f"chdir to cwd {cwd!r}")) from None
    finally:
        os.close(root)
    try:
        os.fchdir(fd)
    finally:
        os.close(fd)
    try:
        here = os.getcwd()
    except OSError:
        here = ""
    if not here.startswith("/"):
        raise PyrunError(f"cwd {cwd!r} is outside of the container's root: possible container breakout, refused")


def with_home(env: list[str], uid: int) -> list[str]:
    """HOME, when the config sets none: the user's home in the container's /etc/passwd, or
    "/" (runc's rule). The file is the image's: read only if regular, and at most 1 MiB."""
    if any(e.startswith("HOME=") for e in env):
        return env
    home = "/"
    try:
        fd = os.open("/etc/passwd", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return env + [f"HOME={home}"]
    try:
        import stat
        if stat.S_ISREG(os.fstat(fd).st_mode):
            for line in os.read(fd, 1 << 20).decode(errors="replace").splitlines():
                fields = line.split(":")
                if len(fields) >= 6 and fields[2] == str(uid) and fields[5]:
                    home = fields[5]
                    break
    except OSError:
        pass
    finally:
        os.close(fd)
    return env + [f"HOME={home}"]


def find_executable(arg0: str, env: list[str]) -> str:
    """PATH lookup as execvp does it, inside the container's root (we are after pivot_root)."""
    if "/" in arg0:
        if not os.path.exists(arg0):
            raise PyrunError(f"exec {arg0}: no such file or directory")  # runc's words
        return arg0
    path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/local/bin:/usr/bin:/bin")
    for d in path.split(":"):
        cand = os.path.join(d or ".", arg0)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise PyrunError(f'exec: "{arg0}": executable file not found in $PATH')


def set_user(user: dict, setgroups: bool = True) -> None:
    """`setgroups` is off in a user namespace that denies it (an unprivileged user's map
    of its own gid): the groups stay as they came, and none can be added."""
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    if not setgroups and user.get("additionalGids"):
        raise PyrunError("process.user.additionalGids: the container's user namespace denies setgroups "
                         "(its gidMappings are an unprivileged user's own gid)")
    try:
        if setgroups:
            os.setgroups(list(user.get("additionalGids") or ()))
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as e:
        raise PyrunError(describe_oserror(e, f"set user {uid}:{gid}")) from None


def drop_bounding_set(caps: dict | None) -> None:
    """While CAP_SETPCAP is still effective, i.e. before the uid changes."""
    import _prctl
    bounding = set(cap_numbers((caps or {}).get("bounding"), "bounding"))
    try:
        for cap in range(last_cap() + 1):
            if cap not in bounding:
                _prctl.prctl(_prctl.PR_CAPBSET_DROP, cap)
    except OSError as e:
        raise PyrunError(describe_oserror(e, "drop capability bounding set")) from None


def apply_capabilities(caps: dict | None) -> None:
    """The effective, permitted and inheritable sets at once, then ambient.

    python-prctl drops the bounding set (above); capset and ambient go through the
    shim, because python-prctl's tables stop at CAP_BPF and it has no ambient calls."""
    caps = caps or {}
    from . import _shim
    try:
        _shim.capset(_mask(caps.get("effective")), _mask(caps.get("permitted")),
                     _mask(caps.get("inheritable")))
        for cap in cap_numbers(caps.get("ambient"), "ambient"):
            try:
                _shim.cap_ambient_raise(cap)
            except PermissionError:
                # Not in both permitted and inheritable: the kernel refuses, and runc
                # carries on without it; so do we (runc's default spec asks for this).
                pass
    except OSError as e:
        raise PyrunError(describe_oserror(e, "apply capabilities")) from None


def _mask(names) -> int:
    m = 0
    for n in cap_numbers(names, "capabilities"):
        m |= 1 << n
    return m


def set_keepcaps(on: bool) -> None:
    """Keep the permitted set across the setuid away from root."""
    import _prctl
    _prctl.prctl(_prctl.PR_SET_KEEPCAPS, 1 if on else 0)


def set_no_new_privs() -> None:
    import _prctl
    _prctl.prctl(_prctl.PR_SET_NO_NEW_PRIVS, 1)


def compile_seccomp(linux: dict, cache_dir: str | None):
    if not linux.get("seccomp"):
        return None
    from . import seccomp
    return seccomp.compile(linux["seccomp"], cache_dir=cache_dir)


def become_process(proc: dict, seccomp, send_listener_fd, setgroups: bool = True) -> None:
    """Credentials, capabilities and the privileged part of seccomp, in runc's order.

    Done before the init reports "ready", so that a failure fails `create`. Without
    noNewPrivileges the filter needs CAP_SYS_ADMIN to load, so it goes in before
    the capabilities are dropped; with it, as late as possible (finish()). Shared
    by the init and by exec."""
    user = proc.get("user") or {}
    # runc's default when the config sets none; the caller's umask must not leak in.
    os.umask(user["umask"] if user.get("umask") is not None else 0o022)
    apply_lsm(proc)
    if seccomp is not None and not proc.get("noNewPrivileges"):
        _load_seccomp(seccomp, send_listener_fd)
    drop_bounding_set(proc.get("capabilities"))
    set_keepcaps(True)
    set_user(user, setgroups)
    set_keepcaps(False)
    apply_capabilities(proc.get("capabilities"))
    if proc.get("noNewPrivileges"):
        set_no_new_privs()


def finish(proc: dict, seccomp, send_listener_fd, *, preserve_fds: int, keep_fds: tuple) -> None:
    """The last steps before execve: NOFILE's soft limit (nothing is opened after it but
    a seccomp listener), a noNewPrivileges filter, and no fd of the runtime left."""
    lower_nofile(proc.get("rlimits"))
    if seccomp is not None and proc.get("noNewPrivileges"):
        _load_seccomp(seccomp, send_listener_fd)
    _close_from(3 + preserve_fds, keep_fds)


def _load_seccomp(seccomp, send_listener_fd) -> None:
    fd = seccomp.load()
    if send_listener_fd is not None:
        send_listener_fd(fd)
        os.close(fd)


def block_signals() -> None:
    """From `start` on, a signal is the program's: held pending until pyrun-exec, which
    resets dispositions and the mask, hands over to it (never the Python init's)."""
    import _signal
    _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())


def _close_from(first: int, keep: tuple) -> None:
    """Nothing of the runtime reaches the container: close every fd from `first` on,
    except `keep` (close-on-exec fds that report the execve itself)."""
    lo = first
    for fd in sorted(f for f in keep if f >= first):
        os.closerange(lo, fd)
        lo = fd + 1
    os.closerange(lo, 1 << 20)


def env_dict(env: list[str]) -> dict:
    return {e.split("=", 1)[0]: e.split("=", 1)[1] if "=" in e else "" for e in env}
