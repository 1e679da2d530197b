"""OCI `linux.seccomp` → a BPF program built by libseccomp, loaded with seccomp(2) last.

compile() runs in the container init while it can still see every file (before
pivot_root): it checks the profile, has libseccomp build the filter and exports it as a
classic-BPF program. Filter.load() is a single seccomp(2) call made just before execve,
so nothing between the two needs libseccomp, the filesystem, or memory allocations that
the profile could forbid. Where the runtime-spec is silent we do what runc does:

- a syscall name this libseccomp does not know is skipped (the profile may be newer than
  the library), and a rule whose action equals the default action is skipped;
- ERRNO and TRACE without errnoRet/defaultErrnoRet return EPERM;
- args on distinct indexes form one rule (all must match); several args on the same
  index become one rule each (any may match), as Docker's profiles expect;
- SCMP_ACT_NOTIFY is refused as the default action and for `write`, because the init
  must still write the listener fd to its parent after the filter is in place;
- the native architecture is always in the filter, whatever `architectures` lists;
- unless the default action already lets a syscall through or answers ENOSYS, syscalls
  numbered above the highest one the profile names (per listed architecture) get
  ENOSYS instead of the default action: they are newer than the profile, and ENOSYS
  is what makes libc fall back (clone3 → clone) rather than fail.

Exported programs may be cached by a hash of (profile, libseccomp version, kernel), as
crun does: orchestrators send the same profile for every container.
"""
import os

from runtime._shim import seccomp as scmp
from runtime.errors import ConfigError, PyrunError
from specs import SPEC_VERSION

# Kernel action values (<linux/seccomp.h>); ERRNO and TRACE carry 16 bits of data.
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
}
_ACTIONS_WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
_EPERM = 1

# enum scmp_compare in <seccomp.h>.
OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# runtime-spec architecture names → libseccomp's own names (seccomp_arch_resolve_name).
ARCHITECTURES = {
    "SCMP_ARCH_X86": "x86",
    "SCMP_ARCH_X86_64": "x86_64",
    "SCMP_ARCH_X32": "x32",
    "SCMP_ARCH_ARM": "arm",
    "SCMP_ARCH_AARCH64": "aarch64",
    "SCMP_ARCH_MIPS": "mips",
    "SCMP_ARCH_MIPS64": "mips64",
    "SCMP_ARCH_MIPS64N32": "mips64n32",
    "SCMP_ARCH_MIPSEL": "mipsel",
    "SCMP_ARCH_MIPSEL64": "mipsel64",
    "SCMP_ARCH_MIPSEL64N32": "mipsel64n32",
    "SCMP_ARCH_PPC": "ppc",
    "SCMP_ARCH_PPC64": "ppc64",
    "SCMP_ARCH_PPC64LE": "ppc64le",
    "SCMP_ARCH_S390": "s390",
    "SCMP_ARCH_S390X": "s390x",
    "SCMP_ARCH_PARISC": "parisc",
    "SCMP_ARCH_PARISC64": "parisc64",
    "SCMP_ARCH_RISCV64": "riscv64",
    "SCMP_ARCH_LOONGARCH64": "loongarch64",
    "SCMP_ARCH_M68K": "m68k",
    "SCMP_ARCH_SH": "sh",
    "SCMP_ARCH_SHEB": "sheb",
}

# seccomp(2) SECCOMP_SET_MODE_FILTER flags (<linux/seccomp.h>).
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1 << 0,
    "SECCOMP_FILTER_FLAG_LOG": 1 << 1,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 1 << 2,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 1 << 5,
}
_FLAG_TSYNC = 1 << 0
_FLAG_NEW_LISTENER = 1 << 3
_FLAG_TSYNC_ESRCH = 1 << 4
_FLAG_WAIT_KILLABLE_RECV = 1 << 5

_ENOSYS = 38
_MAX_ARGS = 6
_U64 = (1 << 64) - 1
_ERRNO_MAX = 0xFFFF
_SCMP_FLTATR_CTL_NNP = 3
_SCMP_FLTATR_CTL_OPTIMIZE = 8
# runc turns on libseccomp's binary-tree layout past this many rules; below it the
# linear layout is as fast and libseccomp <= 2.5.4 mishandles a tree with no rules.
_TREE_THRESHOLD = 32

# The runtime-spec version we speak when the state does not say.


class SeccompError(ConfigError):
    """A profile we cannot honour; str() is one line naming the field and the reason."""


class Filter:
    """A compiled profile: the BPF program and how to install it."""

    __slots__ = ("program", "flags", "uses_notify")

    def __init__(self, program: bytes, flags: int, uses_notify: bool):
        self.program = program
        self.flags = flags
        self.uses_notify = uses_notify

    def load(self) -> int:
        """Install the filter on the calling thread (all threads with TSYNC).

        Returns the notify listener fd when the profile uses SCMP_ACT_NOTIFY, else -1.
        """
        flags = self.flags
        if self.uses_notify:
            flags |= _FLAG_NEW_LISTENER
            if flags & _FLAG_TSYNC:
                # Without TSYNC_ESRCH the kernel cannot report a sync failure
                # through the return value that now carries the listener fd.
                flags |= _FLAG_TSYNC_ESRCH
        else:
            # WAIT_KILLABLE_RECV only means something to a listener, and the
            # kernel refuses it without one.
            flags &= ~_FLAG_WAIT_KILLABLE_RECV
        try:
            ret = scmp.load(self.program, flags)
        except OSError as e:
            hint = " (needs noNewPrivileges or CAP_SYS_ADMIN)" if e.errno == 13 else ""  # EACCES
            raise OSError(e.errno, f"seccomp: loading the filter: {e.strerror}{hint}") from None
        return ret if self.uses_notify else -1


def compile(seccomp: dict, cache_dir: str | None = None) -> Filter:
    """Check `linux.seccomp` and build its filter; SeccompError names what is wrong.

    With cache_dir, exported programs are kept there by a hash of the profile, the
    libseccomp version and the kernel, and reused instead of rebuilt.
    """
    plan = _parse(seccomp)
    program = None
    path = None
    if cache_dir is not None:
        path = os.path.join(cache_dir, _cache_key(seccomp))
        program = _cache_read(path)
    if program is None:
        program = _build(plan)
        if path is not None:
            _cache_write(path, program)
    return Filter(program, plan.flags, plan.uses_notify)


def connect_listener(listener_path: str):
    """Connect to the seccomp agent now, to send on the socket later.

    For an init that loads its filter after pivot_root, when listenerPath is no longer
    reachable by path: connect before, pass the socket to send_listener() after load.
    """
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(listener_path)
    except (OSError, ValueError) as e:
        sock.close()
        raise SeccompError(f"seccomp listenerPath {listener_path}: connect: "
                           f"{getattr(e, 'strerror', None) or e}") from None
    return sock


def send_listener(listener_path: str, listener_fd: int, state: dict, pid: int,
                  metadata: str, sock=None) -> None:
    """Send the containerProcessState and the listener fd to the seccomp agent.

    One connection per container, the JSON and the fd in one SCM_RIGHTS message,
    then close, as the runtime-spec's listenerPath section asks. `sock`, from
    connect_listener(), is used (and closed) instead of connecting to the path.
    """
    import json
    import socket

    message = {"ociVersion": state.get("ociVersion") or SPEC_VERSION, "fds": ["seccompFd"],
               "pid": pid, "state": state}
    if metadata:
        message["metadata"] = metadata
    data = json.dumps(message).encode()
    if sock is None:
        sock = connect_listener(listener_path)
    try:
        with sock:
            sent = socket.send_fds(sock, [data], [listener_fd])
            if sent < len(data):
                sock.sendall(data[sent:])
    except OSError as e:
        raise SeccompError(f"seccomp listenerPath {listener_path}: sending the seccomp fd: "
                           f"{e.strerror or e}") from None


def features() -> dict:
    """The `seccomp` part of `pyrun features`, from the same tables compile() uses."""
    supported = [name for name, bit in FLAGS.items() if _flag_supported(bit)]
    archs = [name for name, native in ARCHITECTURES.items() if scmp.arch_token(native) != 0]
    return {"enabled": True, "actions": sorted(ACTIONS), "operators": sorted(OPERATORS),
            "archs": archs, "knownFlags": list(FLAGS), "supportedFlags": supported}


def libseccomp_version() -> str:
    return ".".join(map(str, scmp.version()))


# The seccomp agent's side, for agents and tests written in Python.

def notify_receive(listener_fd: int) -> dict:
    """Block until the filter reports a syscall; returns id, pid, nr, arch and args."""
    return scmp.notify_receive(listener_fd)


def notify_respond(listener_fd: int, notif_id: int, val: int = 0, error: int = 0,
                   allow: bool = False) -> None:
    """Answer a notification: return `val`, fail with -`error` (an errno), or let it run."""
    scmp.notify_respond(listener_fd, notif_id, val, -error if error > 0 else error, allow)


def syscall_number(name: str) -> int:
    """The native number of a syscall, or -1 if libseccomp does not know it."""
    nr = scmp.syscall_number(name)
    return -1 if nr == scmp.NR_UNKNOWN else nr


# Parsing: everything a user can get wrong is found here, before libseccomp runs.

class _Rule:
    __slots__ = ("where", "action", "names", "condition_sets")

    def __init__(self, where, action, names, condition_sets):
        self.where = where
        self.action = action
        self.names = names
        self.condition_sets = condition_sets  # list of lists of (index, op, a, b)


class _Plan:
    __slots__ = ("default_action", "arches", "flags", "uses_notify", "rules")

    def __init__(self, default_action, arches, flags, uses_notify, rules):
        self.default_action = default_action
        self.arches = arches
        self.flags = flags
        self.uses_notify = uses_notify
        self.rules = rules


_WHERE = "linux.seccomp"


def _parse(seccomp) -> _Plan:
    if not isinstance(seccomp, dict):
        raise SeccompError(f"{_WHERE}: must be an object, not {type(seccomp).__name__}")
    if "defaultAction" not in seccomp:
        raise SeccompError(f"{_WHERE}.defaultAction: is required")
    default_name = seccomp["defaultAction"]
    default = _action(f"{_WHERE}.defaultAction", default_name,
                      seccomp.get("defaultErrnoRet"), f"{_WHERE}.defaultErrnoRet")
    if default_name == "SCMP_ACT_NOTIFY":
        raise SeccompError(f"{_WHERE}.defaultAction: SCMP_ACT_NOTIFY cannot be the default "
                           "action (the runtime itself must still write after loading)")
    arches = [_arch(f"{_WHERE}.architectures[{i}]", a)
              for i, a in enumerate(_list(seccomp, "architectures"))]
    flags = 0
    for i, name in enumerate(_list(seccomp, "flags")):
        flags |= _flag(f"{_WHERE}.flags[{i}]", name)
    rules = [_rule(f"{_WHERE}.syscalls[{i}]", s, default)
             for i, s in enumerate(_list(seccomp, "syscalls"))]
    uses_notify = any(r.action == ACTIONS["SCMP_ACT_NOTIFY"] for r in rules)
    if uses_notify:
        path = seccomp.get("listenerPath")
        if not isinstance(path, str) or not path:
            raise SeccompError(f"{_WHERE}.listenerPath: is required when SCMP_ACT_NOTIFY is used")
    for key in ("listenerPath", "listenerMetadata"):
        if key in seccomp and not isinstance(seccomp[key], str):
            raise SeccompError(f"{_WHERE}.{key}: must be a string")
    return _Plan(default, arches, flags, uses_notify, rules)


def _list(obj: dict, key: str) -> list:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise SeccompError(f"{_WHERE}.{key}: must be an array")
    return value


def _uint(where: str, value, maximum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise SeccompError(f"{where}: must be an integer from 0 to {maximum}, not {value!r}")
    return value


def _action(where: str, name, errno_ret, errno_where: str) -> int:
    if not isinstance(name, str) or name not in ACTIONS:
        raise SeccompError(f"{where}: unknown action {name!r}")
    if name not in _ACTIONS_WITH_ERRNO:
        if errno_ret is not None:  # config-linux.md: MUST fail (crun does; runc ignores it)
            raise SeccompError(f"{errno_where}: {name} returns no errno")
        return ACTIONS[name]
    errno = _EPERM if errno_ret is None else _uint(errno_where, errno_ret, _ERRNO_MAX)
    return ACTIONS[name] | errno


def _arch(where: str, name) -> int:
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise SeccompError(f"{where}: unknown architecture {name!r}")
    token = scmp.arch_token(ARCHITECTURES[name])
    if token == 0:
        raise SeccompError(f"{where}: architecture {name} is not supported by "
                           f"libseccomp {libseccomp_version()}")
    return token


def _flag(where: str, name) -> int:
    if not isinstance(name, str) or name not in FLAGS:
        raise SeccompError(f"{where}: unknown flag {name!r}")
    bit = FLAGS[name]
    if not _flag_supported(bit):
        raise SeccompError(f"{where}: flag {name} is not supported by this kernel "
                           f"({os.uname().release})")
    return bit


def _flag_supported(bit: int) -> bool:
    if bit == _FLAG_WAIT_KILLABLE_RECV:
        bit |= _FLAG_NEW_LISTENER  # the kernel accepts it only with a listener
    return scmp.flag_supported(bit)


_SYSCALL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _rule(where: str, syscall, default: int) -> _Rule:
    if not isinstance(syscall, dict):
        raise SeccompError(f"{where}: must be an object")
    names = syscall.get("names")
    if not isinstance(names, list) or not names:
        raise SeccompError(f"{where}.names: must be a non-empty array of syscall names")
    for j, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise SeccompError(f"{where}.names[{j}]: must be a non-empty string, not {name!r}")
        # A well-formed name this libseccomp does not know (newer, or of another arch)
        # is skipped, as runc does, so current profiles keep working; a malformed one
        # cannot be a syscall anywhere and is refused.
        if not _SYSCALL_CHARS.issuperset(name):
            raise SeccompError(f"{where}.names[{j}]: {name!r} is not a syscall name")
    if "action" not in syscall:
        raise SeccompError(f"{where}.action: is required")
    action = _action(f"{where}.action", syscall["action"], syscall.get("errnoRet"),
                     f"{where}.errnoRet")
    if action == ACTIONS["SCMP_ACT_NOTIFY"] and "write" in names:
        raise SeccompError(f"{where}: SCMP_ACT_NOTIFY cannot be used for the write syscall "
                           "(the runtime must write the listener fd after loading)")
    args = syscall.get("args") or []
    if not isinstance(args, list):
        raise SeccompError(f"{where}.args: must be an array")
    conditions = [_condition(f"{where}.args[{k}]", arg) for k, arg in enumerate(args)]
    indexes = [c[0] for c in conditions]
    if len(set(indexes)) == len(indexes):
        condition_sets = [conditions]
    else:
        condition_sets = [[c] for c in conditions]
    return _Rule(where, action, names, condition_sets)


def _condition(where: str, arg) -> tuple:
    if not isinstance(arg, dict):
        raise SeccompError(f"{where}: must be an object")
    if "index" not in arg:
        raise SeccompError(f"{where}.index: is required")
    index = _uint(f"{where}.index", arg["index"], _MAX_ARGS - 1)
    if "value" not in arg:
        raise SeccompError(f"{where}.value: is required")
    value = _uint(f"{where}.value", arg["value"], _U64)
    value_two = _uint(f"{where}.valueTwo", arg.get("valueTwo", 0), _U64)
    op = arg.get("op")
    if not isinstance(op, str) or op not in OPERATORS:
        raise SeccompError(f"{where}.op: unknown operator {op!r}")
    return (index, OPERATORS[op], value, value_two)


# Building: libseccomp turns the plan into BPF.

def _build(plan: _Plan) -> bytes:
    try:
        ctx = scmp.Builder(plan.default_action)
    except OSError:
        raise SeccompError(f"{_WHERE}.defaultAction: libseccomp refused action "
                           f"{plan.default_action:#x} on this kernel") from None
    try:
        # The kernel, not libseccomp, decides at load; keep libseccomp from
        # assuming anything about no_new_privs.
        ctx.set_attr(_SCMP_FLTATR_CTL_NNP, 0)
        for token in plan.arches:
            try:
                ctx.add_arch(token)
            except OSError as e:
                name = next((k for k, v in ARCHITECTURES.items() if scmp.arch_token(v) == token), f"{token:#x}")
                why = "not of this host's byte order" if e.errno == 33 else os.strerror(e.errno)  # EDOM
                raise SeccompError(f"{_WHERE}.architectures: {name} cannot join this host's filter ({why})") from None
        if len(plan.rules) > _TREE_THRESHOLD:
            try:
                ctx.set_attr(_SCMP_FLTATR_CTL_OPTIMIZE, 2)
            except OSError:
                pass  # best effort: an older libseccomp builds the linear filter
        for rule in plan.rules:
            if rule.action != plan.default_action:
                _add_rule(ctx, rule)
        return _enosys_stub(plan) + _export(ctx)
    finally:
        ctx.close()


def _add_rule(ctx, rule: _Rule) -> None:
    for name in rule.names:
        nr = scmp.syscall_number(name)
        if nr == scmp.NR_UNKNOWN:
            continue  # unknown to this libseccomp: skipped, as runc does
        for conditions in rule.condition_sets:
            try:
                ctx.add_rule(rule.action, nr, conditions)
            except OSError as e:
                raise SeccompError(f"{rule.where}: adding the rule for {name}: {e.strerror}") from None


def _export(ctx) -> bytes:
    try:
        return ctx.export_bpf()
    except OSError as e:
        raise SeccompError(f"{_WHERE}: exporting the filter: {e.strerror}") from None


# The ENOSYS stub: classic BPF put in front of libseccomp's program, which starts by
# loading the architecture again, so the stub may clobber the accumulator freely.

_BPF_LD_ABS_W = 0x20
_BPF_JEQ = 0x15
_BPF_JGT = 0x25
_BPF_JSET = 0x45
_BPF_JA = 0x05
_BPF_RET = 0x06
_X32_SYSCALL_BIT = 0x40000000
_AUDIT_ARCH_X86_64 = 0xC000003E
_PERMISSIVE = {ACTIONS["SCMP_ACT_ALLOW"], ACTIONS["SCMP_ACT_LOG"]}
_S390 = ("s390", "s390x")
_X32_TOKEN = 0x4000003E  # SCMP_ARCH_X32 (EM_X86_64 | __AUDIT_ARCH_LE): libseccomp's own


def _enosys_stub(plan: _Plan) -> bytes:
    action = plan.default_action
    # TRACE counts as permissive, as in runc: a tracer should handle new syscalls.
    if (action in _PERMISSIVE or action & 0xFFFF0000 == ACTIONS["SCMP_ACT_TRACE"]
            or action == ACTIONS["SCMP_ACT_ERRNO"] | _ENOSYS):
        return b""
    names = {n for rule in plan.rules for n in rule.names}
    groups = {}  # audit arch → {token: highest syscall number the profile names}
    for token in dict.fromkeys(plan.arches):
        numbers = [scmp.syscall_number(n, token) for n in names]
        highest = max((nr for nr in numbers if nr >= 0), default=None)
        if highest is not None:
            audit = _AUDIT_ARCH_X86_64 if token == _X32_TOKEN else token
            groups.setdefault(audit, {})[token] = highest
    if not groups:
        return b""
    code = [(_BPF_LD_ABS_W, None, None, 4)]
    code += [(_BPF_JEQ, ("arch", audit), None, audit) for audit in groups]
    code.append((_BPF_JA, None, None, "filter"))
    for audit, highest in groups.items():
        code.append(("label", ("arch", audit)))
        code.append((_BPF_LD_ABS_W, None, None, 0))
        code += _arch_checks(audit, highest)
    code.append(("label", "enosys"))
    code.append((_BPF_RET, None, None, ACTIONS["SCMP_ACT_ERRNO"] | _ENOSYS))
    code.append(("label", "filter"))
    return _assemble(code)


def _arch_checks(audit: int, highest: dict) -> list:
    if audit != _AUDIT_ARCH_X86_64:
        (token, nr), = highest.items()
        checks = []
        if _arch_name(token) in _S390:
            # s390 multiplexes unknown large numbers through setup(2), number 0.
            checks.append((_BPF_JEQ, "enosys", None, 0))
        return checks + [(_BPF_JGT, "enosys", None, nr), (_BPF_JA, None, None, "filter")]
    x64, x32 = highest.get(_AUDIT_ARCH_X86_64), highest.get(_X32_TOKEN)
    # x32 shares x86_64's audit arch and marks its syscalls with a bit of the number.
    checks = [(_BPF_JSET, "x32" if x32 is not None else "filter",
               None if x64 is not None else "filter", _X32_SYSCALL_BIT)]
    if x64 is not None:
        checks += [(_BPF_JGT, "enosys", None, x64), (_BPF_JA, None, None, "filter")]
    if x32 is not None:
        checks += [("label", "x32"), (_BPF_JGT, "enosys", None, x32),
                   (_BPF_JA, None, None, "filter")]
    return checks


def _arch_name(token: int) -> str:
    return next((n for n in ARCHITECTURES.values() if scmp.arch_token(n) == token), "")


def _assemble(code: list) -> bytes:
    """Resolve labels into the forward offsets BPF wants; "filter" is the end."""
    import struct

    insns, labels = [], {}
    for item in code:
        if item[0] == "label":
            labels[item[1]] = len(insns)
        else:
            insns.append(item)
    labels["filter"] = len(insns)
    out = []
    for pc, (op, jt, jf, k) in enumerate(insns):
        def offset(target):
            if target is None:
                return 0
            off = labels[target] - pc - 1
            if not 0 <= off <= 255:
                raise SeccompError(f"{_WHERE}: ENOSYS stub jump out of range")
            return off
        if op == _BPF_JA:
            k, jt, jf = labels[k] - pc - 1, None, None
        out.append(struct.pack("=HBBI", op, offset(jt), offset(jf), k))
    return b"".join(out)


# The cache: programs by a hash of everything that shapes them.

def _cache_key(seccomp: dict) -> str:
    # repr, not json: the profile is plain JSON data, so repr is exact, and it spares
    # the hot path json's import; a reordered profile merely misses the cache.
    try:
        from _sha256 import sha256  # hashlib would load OpenSSL (~4 ms)
    except ImportError:
        from hashlib import sha256
    uname = os.uname()
    ident = "\0".join((repr(seccomp), libseccomp_version(), str(scmp.api_level()),
                       uname.release, uname.version, uname.machine))
    return sha256(ident.encode()).hexdigest() + ".bpf"


def _cache_read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            program = f.read()
    except OSError:
        return None
    return program if program and len(program) % 8 == 0 else None


def _cache_write(path: str, program: bytes) -> None:
    # A cache is an optimisation: failing to write one must not fail the container.
    from .state import write_atomic
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        write_atomic(path, program)
    except (OSError, PyrunError):
        pass
